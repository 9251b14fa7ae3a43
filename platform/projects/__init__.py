"""Code that runs on the nodes: building eggs of Scrapy projects."""
