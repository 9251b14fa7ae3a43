from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    """Users' Scrapy projects: git deploys, versions on the nodes, and the spiders they contain."""

    name = "projects"
    default_auto_field = "django.db.models.BigAutoField"
