"""Jobs, their queries and their runs."""

from .job import Job, Query
from .run import ACTIVE, TERMINAL, TRANSITIONS, IllegalTransition, Run, RunStatus, Trigger

__all__ = ["ACTIVE", "TERMINAL", "TRANSITIONS", "IllegalTransition", "Job", "Query", "Run", "RunStatus", "Trigger"]
