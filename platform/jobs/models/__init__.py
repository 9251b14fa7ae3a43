"""Jobs, their queries and their runs."""

from core.errors import IllegalTransition

from .job import Job, Query
from .run import ACTIVE, REPORTED_TRANSITIONS, TERMINAL, TRANSITIONS, Run, RunStatus, Trigger

__all__ = ["ACTIVE", "REPORTED_TRANSITIONS", "TERMINAL", "TRANSITIONS", "IllegalTransition", "Job", "Query", "Run", "RunStatus", "Trigger"]
