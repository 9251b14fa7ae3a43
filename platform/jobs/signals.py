"""Signals of the run lifecycle: how other apps (alerts, quality) follow runs without jobs knowing them.

`run_finished` and `run_retrying` are sent once the transaction that made the change has committed
(`send_robust`: a receiver that raises is logged and does not undo the run's move). Receivers get
the Run as `run`; they should be quick and hand slow work (a webhook) to a task.
"""

from django.dispatch import Signal

# Internal: sent by Run.finish right after its guarded move to a terminal status, inside the
# transaction of that move (jobs.policies makes the retry there, so both commit or neither does).
run_settled = Signal()

# A run reached a terminal status. kwargs: run (Run), retry (the Run that retries it, or None).
run_finished = Signal()

# A failed or lost run will be started again. kwargs: run (the failed or lost Run), retry (the new
# queued Run, `attempt` = run.attempt + 1, waiting until `not_before`), delay_s (float).
run_retrying = Signal()
