"""Counters and histogram buckets Prometheus reads through GET /metrics, kept in the database.

Kept here rather than in each process's memory, so that every gunicorn worker, Celery worker and web
host adds to the same figures, and a restart does not reset them (monitoring.series).
"""

from django.db import models


class Series(models.Model):
    """One stored value: a counter, or one histogram bucket (non-cumulative) or sum, of a metric and labels."""

    metric = models.CharField(max_length=100)
    labels = models.CharField(max_length=300, blank=True, help_text='Sorted k=v pairs, e.g. endpoint=scrape,rendered=false')
    bucket = models.CharField(max_length=20, blank=True, help_text='A histogram bucket\'s upper bound, "sum", or blank')
    value = models.FloatField(default=0)

    class Meta:
        verbose_name_plural = "series"
        constraints = [models.UniqueConstraint(fields=["metric", "labels", "bucket"], name="one_series_value")]

    def __str__(self) -> str:
        return f"{self.metric}{{{self.labels}}}[{self.bucket}] = {self.value}"
