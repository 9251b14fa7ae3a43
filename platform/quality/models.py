"""What the platform found about a run's data: validation counts as items arrived, and its verdict."""

from __future__ import annotations

from django.db import models


class Verdict(models.TextChoices):
    PASSED = "passed"
    WARNING = "warning"
    FAILED = "failed"


class RunQuality(models.Model):
    """A run's data quality: items checked, invalid and dropped, errors per field, coverage and the verdict."""

    run = models.OneToOneField("jobs.Run", primary_key=True, on_delete=models.CASCADE, related_name="quality")
    checked = models.PositiveBigIntegerField(default=0, help_text="Items validated as they arrived")
    invalid = models.PositiveBigIntegerField(default=0, help_text="Items that broke a rule or the item schema")
    dropped = models.PositiveBigIntegerField(default=0, help_text="Invalid items not stored (invalid_items: drop)")
    errors = models.JSONField(default=dict, blank=True, help_text="Field -> how many items broke its rules")
    examples = models.JSONField(default=list, blank=True, help_text="The first problems found: field, message, value")
    coverage = models.JSONField(default=dict, blank=True, help_text="Field -> share of items where it is present and not empty")
    verdict = models.CharField(max_length=8, blank=True, choices=Verdict.choices, help_text="Empty until judged")
    reasons = models.JSONField(default=list, blank=True, help_text="Why: one {monitor, level, message} per finding")
    judged_at = models.DateTimeField(null=True, blank=True)
    # A run settled `lost` whose crawl reports again ends once more: judged again for its new status.
    judged_status = models.CharField(max_length=16, blank=True, help_text="The run's status when it was judged")

    class Meta:
        verbose_name_plural = "run qualities"

    def __str__(self) -> str:
        return f"{self.run_id}: {self.verdict or 'not judged'}"


class CheckedBatch(models.Model):
    """A batch of items whose validation was counted: a retried delivery of it is not counted again."""

    run = models.ForeignKey("jobs.Run", on_delete=models.CASCADE, related_name="+")
    part = models.PositiveIntegerField()
    seq = models.PositiveBigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "part", "seq"], name="one_check_per_batch")]
