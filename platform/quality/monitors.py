"""Monitors on a job, and the verdict they give a run: `passed`, `warning` or `failed`, with reasons.

A job's `monitors` object (every key optional):
    min_items            the run has at least this many items
    min_coverage         {field: share}: each field present and not empty in at least this share of items
    max_invalid_share    at most this share of the items broke a rule or the item schema
    max_error_log_lines  at most this many ERROR lines in the crawl's log (Scrapy's log_count/ERROR)
    max_item_drop        {"share": s, "runs": n}: items fell by at most s against the mean of the job's
                         last n succeeded runs (default n = 5; judged once there is one such run)
    warn_only            names of the monitors above whose breach is a warning, not a failure
Invalid items a run kept (invalid_items: keep) with no max_invalid_share monitor are a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MONITORS = ("min_items", "min_coverage", "max_invalid_share", "max_error_log_lines", "max_item_drop")
DEFAULT_HISTORY_RUNS = 5
MAX_HISTORY_RUNS = 50


def _whole(value: Any, low: int = 0, high: int = 10**12) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _share(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def monitor_errors(monitors: Any, path: str = "monitors") -> dict[str, str]:
    """Why a job's `monitors` object is not valid, keyed by path; empty if it is."""
    if not isinstance(monitors, dict):
        return {path: "Must be an object"}
    errors = {f"{path}.{key}": "Unknown monitor" for key in monitors if key not in (*MONITORS, "warn_only")}
    for key in ("min_items", "max_error_log_lines"):
        if key in monitors and not _whole(monitors[key]):
            errors[f"{path}.{key}"] = "Must be a whole number, 0 or more"
    if "max_invalid_share" in monitors and not _share(monitors["max_invalid_share"]):
        errors[f"{path}.max_invalid_share"] = "Must be a number from 0 to 1"
    if "min_coverage" in monitors:
        coverage = monitors["min_coverage"]
        if not isinstance(coverage, dict) or not coverage:
            errors[f"{path}.min_coverage"] = "Must be an object of field: share (0 to 1)"
        else:
            errors.update({f"{path}.min_coverage.{name}": "Must be a number from 0 to 1"
                           for name, share in coverage.items() if not _share(share)})
    if "max_item_drop" in monitors:
        drop = monitors["max_item_drop"]
        if not isinstance(drop, dict):
            errors[f"{path}.max_item_drop"] = 'Must be an object: {"share": 0 to 1, "runs": 1 to 50}'
        else:
            errors.update({f"{path}.max_item_drop.{key}": "Unknown field" for key in drop if key not in ("share", "runs")})
            if not _share(drop.get("share")):
                errors[f"{path}.max_item_drop.share"] = "Required: a number from 0 to 1"
            if "runs" in drop and not _whole(drop["runs"], 1, MAX_HISTORY_RUNS):
                errors[f"{path}.max_item_drop.runs"] = f"Must be a whole number from 1 to {MAX_HISTORY_RUNS}"
    if "warn_only" in monitors:
        names = monitors["warn_only"]
        if not isinstance(names, list) or any(name not in MONITORS for name in names):
            errors[f"{path}.warn_only"] = f"Must be a list of: {', '.join(MONITORS)}"
    return errors


@dataclass(frozen=True)
class Facts:
    """What a run's verdict is judged from."""

    items: int
    invalid: int
    coverage: dict[str, float]
    error_log_lines: int
    history: list[int]  # items of the job's last succeeded runs, newest first


def _pct(share: float) -> str:
    return f"{share * 100:.4g}%"


def findings(monitors: dict[str, Any], facts: Facts) -> list[dict[str, str]]:
    """One {monitor, level, message} per breach (and the kept-invalid-items warning)."""
    warn_only = set(monitors.get("warn_only") or [])
    found: list[dict[str, str]] = []

    def breach(monitor: str, message: str) -> None:
        found.append({"monitor": monitor, "level": "warning" if monitor in warn_only else "failed", "message": message})

    if (minimum := monitors.get("min_items")) is not None and facts.items < minimum:
        breach("min_items", f"{facts.items} items, fewer than the minimum of {minimum}")
    for name, share in (monitors.get("min_coverage") or {}).items():
        have = facts.coverage.get(name, 0.0)
        if have < share:
            breach("min_coverage", f"Field {name!r} is filled in {_pct(have)} of items, less than {_pct(share)}")
    invalid_share = facts.invalid / facts.items if facts.items else (1.0 if facts.invalid else 0.0)
    if (maximum := monitors.get("max_invalid_share")) is not None:
        if invalid_share > maximum:
            breach("max_invalid_share", f"{facts.invalid} invalid items ({_pct(invalid_share)}), more than {_pct(maximum)}")
    elif facts.invalid:
        found.append({"monitor": "invalid_items", "level": "warning",
                      "message": f"{facts.invalid} items broke their validation rules"})
    if (maximum := monitors.get("max_error_log_lines")) is not None and facts.error_log_lines > maximum:
        breach("max_error_log_lines", f"{facts.error_log_lines} ERROR lines in the log, more than {maximum}")
    drop = monitors.get("max_item_drop")
    if drop and facts.history:
        mean = sum(facts.history) / len(facts.history)
        fell = 1 - facts.items / mean if mean else 0.0
        if fell > drop["share"]:
            runs = len(facts.history)
            breach("max_item_drop", f"{facts.items} items, {_pct(fell)} fewer than the mean of the last {runs} "
                   f"succeeded run{'s' if runs != 1 else ''} ({mean:.4g}); at most {_pct(drop['share'])} allowed")
    return found


def verdict(found: list[dict[str, str]]) -> str:
    levels = {f["level"] for f in found}
    return "failed" if "failed" in levels else "warning" if "warning" in levels else "passed"


def history_runs(monitors: dict[str, Any]) -> int:
    drop = monitors.get("max_item_drop") or {}
    return drop.get("runs", DEFAULT_HISTORY_RUNS) if drop else 0
