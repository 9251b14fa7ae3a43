"""Jobs, their queries and their runs."""

from core.errors import IllegalTransition

from .job import Job, Query
from .run import ACTIVE, TERMINAL, TRANSITIONS, Run, RunStatus, Trigger

__all__ = ["ACTIVE", "TERMINAL", "TRANSITIONS", "IllegalTransition", "Job", "Query", "Run", "RunStatus", "Trigger"]
