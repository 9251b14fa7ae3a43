"""Jobs, their queries and their runs."""

from core.errors import IllegalTransition

from .job import Job, Query
from .queue import QueueLease
from .run import ACTIVE, REPORTED_TRANSITIONS, TERMINAL, TRANSITIONS, Run, RunStatus, StopReason, Trigger

__all__ = ["ACTIVE", "REPORTED_TRANSITIONS", "TERMINAL", "TRANSITIONS", "IllegalTransition", "Job", "Query", "QueueLease", "Run", "RunStatus", "StopReason",
           "Trigger"]
