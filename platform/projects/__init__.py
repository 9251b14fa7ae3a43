"""Users' Scrapy projects: git deploys, eggs, versions on the nodes, spider discovery."""
