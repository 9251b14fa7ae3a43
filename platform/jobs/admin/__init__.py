"""The jobs app's admin: jobs (jobs.py) and runs (runs.py)."""

from . import jobs, runs  # noqa: F401 - registers the model admins
