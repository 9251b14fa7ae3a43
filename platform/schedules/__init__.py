"""Job schedules, kept in step with django-celery-beat and fired exactly once per fire time."""
