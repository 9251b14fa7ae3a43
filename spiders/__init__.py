"""The Scrapy project deployed to every Scrapyd node: built-in spiders and the platform reporter."""
