"""The line of a failed deploy's log that says what went wrong (git's or Python's own words), for summaries.

A deploy's `error` is the platform's one-line reason ("Could not fetch v9", "`scrapy list` failed");
the cause is in the detail lines the log indents under it: git's `fatal: ...`, or the exception line
closing a traceback (`ModuleNotFoundError: No module named 'x'`), never "Traceback (most recent ...".
"""

from __future__ import annotations

import re

from .models import Deploy, DeployStatus

_DETAIL_RE = re.compile(r"^\[\s*[\d.]+s\]   \| (?P<text>.*)$")
_EXCEPTION_RE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Warning|Failure)\b.*")
_GIT_RE = re.compile(r"\b(?:fatal|error|ERROR):\s*\S")
_NOISE = ("Traceback (most recent call last)", "File \"", "During handling", "The above exception", "^", "~")


def log_cause(log: str) -> str:
    """The most telling detail line of a deploy log, or '' if it has none."""
    details = [m.group("text").strip() for line in log.splitlines() if (m := _DETAIL_RE.match(line))]
    details = [d for d in details if d and not d.startswith(_NOISE)]
    exceptions = [d for d in details if _EXCEPTION_RE.match(d)]
    if exceptions:
        return exceptions[-1]  # a traceback ends with the exception that stopped it
    for detail in details:
        if match := _GIT_RE.search(detail):
            return detail[match.start():]
    return details[0] if details else ""


def deploy_cause(deploy: Deploy) -> str:
    """What a failed deploy's summary shows under its reason ('' when the reason says it all)."""
    if deploy.status != DeployStatus.FAILED:
        return ""
    cause = log_cause(deploy.log)
    return "" if not cause or cause in deploy.error else cause
