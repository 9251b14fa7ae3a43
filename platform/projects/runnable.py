"""What a run of a deployed spider is made of: the spider that can run, in the version that will run,
and the arguments it gets. Every way of starting one goes through here: a saved spider job (run now
or by its schedule), `POST /runs` and Scrapyd's `schedule.json` under `/scrapyd/`.

Arguments reach a spider as Scrapy's command line gives them (`scrapy crawl -a name=value`): strings.
The one rule, whichever way a run was started:
- a string reaches the spider exactly as given (a `schedule.json` form field is always one);
- a number, boolean, list or object reaches it as its compact JSON text: `true` → "true",
  `1` → "1", `1.5` → "1.5", `[1, 2]` → "[1,2]", `{"a": 1}` → '{"a":1}' (a spider reads a nested
  value back with `json.loads`);
- `null` is refused: leave the argument out instead.
Names are a letter, then letters, digits or `_`. Names that Scrapyd or Scrapy read themselves are
refused (RESERVED_ARGUMENTS), as are values with control characters other than tab and newlines
(they cannot reach a crawl process's command line), and values or sets of arguments too long for one.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from core.errors import Conflict, NotFound, ValidationFailed
from core.ids import parse_uuid
from nodes.client import SCHEDULE_PARAMETERS

from .models import Project, ProjectVersion, Spider
from .validation import VERSION_RE

ARGUMENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# Besides schedule.json's own fields: `settings` and `name` are keys of the message Scrapyd queues
# for the crawl (an argument of that name breaks the schedule call or is overwritten), `spider_name`
# is a parameter of Scrapyd's scheduler, and Scrapy's Spider takes `name` as the spider's own name.
RESERVED_ARGUMENTS = SCHEDULE_PARAMETERS | {"settings", "spider_name", "name"}
MAX_ARGUMENTS = 100
MAX_ARGUMENT_LENGTH = 10_000
MAX_ARGUMENTS_LENGTH = 100_000  # all values together: a crawl's command line has a size limit
# C0 controls but tab, LF and CR; DEL and C1 controls; lone surrogates (not encodable as UTF-8).
_FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

QUERY_SPIDER = "query"
BUILTIN_SPIDER_ID = uuid.uuid5(uuid.NAMESPACE_URL, "platform:builtin/query")
BUILTIN_SPIDER_PATH = "spiders/builtin/query.py"
QUERY_SPIDER_HINT = (
    "The built-in query spider runs through jobs: create one with POST /jobs (source and queries), "
    "then start it with POST /jobs/{id}/run"
)


def argument_string(value: Any) -> str:
    """The string a spider receives for `value` (see the module's rule; `value` already validated)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _value_error(value: Any) -> str | None:
    if value is None:
        return "Must not be null: leave the argument out instead"
    try:
        text = argument_string(value)
    except ValueError:
        return "Must be a string, or a JSON value without NaN or Infinity"
    if _FORBIDDEN_CHARACTERS.search(text):
        return "Must not contain NUL or other control characters (tab and newlines are allowed)"
    if len(text) > MAX_ARGUMENT_LENGTH:
        return f"At most {MAX_ARGUMENT_LENGTH} characters"
    return None


def argument_errors(arguments: Any, path: str = "arguments") -> dict[str, str]:
    """Why `arguments` cannot be a run's spider arguments, keyed by path (`arguments.<name>`); {} if fine."""
    if not isinstance(arguments, dict):
        return {path: "Must be an object of argument names to values"}
    if len(arguments) > MAX_ARGUMENTS:
        return {path: f"At most {MAX_ARGUMENTS} arguments"}
    errors = {}
    for name, value in arguments.items():
        key = f"{path}.{name}"
        if not isinstance(name, str) or not ARGUMENT_NAME.match(name):
            errors[key] = "Not an allowed argument name: a letter, then letters, digits or _ (at most 64)"
        elif name in RESERVED_ARGUMENTS:
            errors[key] = "Reserved: " + ", ".join(sorted(RESERVED_ARGUMENTS)) + " are read by Scrapyd or Scrapy itself"
        elif problem := _value_error(value):
            errors[key] = problem
    if not errors and sum(len(argument_string(v)) for v in arguments.values()) > MAX_ARGUMENTS_LENGTH:
        errors[path] = f"At most {MAX_ARGUMENTS_LENGTH} characters in all"
    return errors


def normalise_arguments(arguments: dict[str, Any]) -> dict[str, str]:
    """Validated arguments as the strings the spider receives."""
    return {str(name): argument_string(value) for name, value in arguments.items()}


def clean_arguments(arguments: Any, path: str = "arguments") -> dict[str, str]:
    """Validate and normalise spider arguments; ValidationFailed (keyed by path) if any is refused."""
    if errors := argument_errors(arguments, path):
        raise ValidationFailed("Invalid spider arguments", details=errors)
    return normalise_arguments(arguments)


@dataclass(frozen=True)
class RunnableSpider:
    """A deployed spider and the version of its project a run of it uses."""

    spider: Spider
    version: ProjectVersion


def _text_ok(value: str) -> bool:
    return not _FORBIDDEN_CHARACTERS.search(value)


def runnable_version(spider: Spider, version: str | None = None) -> ProjectVersion:
    """The version a run of `spider` uses: `version` if pinned, else the project's current one.

    It must exist and contain the spider. A pinned version that does not is the request's fault
    (ValidationFailed on `version`); the current version lacking it is the project's state (Conflict).
    """
    project = spider.project
    if version is not None:
        found = None
        if VERSION_RE.fullmatch(version):
            found = ProjectVersion.objects.filter(project=project, version=version).first()
        if found is None:
            message = f"Project {project.name} has no version {version!r}"
            raise ValidationFailed(message, details={"version": message})
        if spider.name not in found.spiders:
            message = f"Version {version!r} of project {project.name} has no spider {spider.name!r}"
            raise ValidationFailed(message, details={"version": message})
        return found
    current = ProjectVersion.objects.filter(project=project, is_current=True).first()
    if current is None:
        raise Conflict(f"Project {project.name} has no deployed version")
    if spider.name not in current.spiders:
        raise Conflict(f"Spider {spider.name!r} is not in the current version ({current.version}) of project {project.name}")
    return current


def find_runnable_spider(user, *, spider_id: Any = None, spider_name: str | None = None, version: str | None = None,
                         project: Project | None = None) -> RunnableSpider:
    """One of `user`'s spiders (by id, or by name, optionally within `project`) with the version it runs in.

    Unpinned, a spider counts only if its project's current version has it; pinned, only if `version`
    has it. A name two of the user's projects can run is ambiguous (give the id). The built-in query
    spider is no deployed spider: asking for it says how it runs instead.
    """
    if not spider_id and not spider_name:
        raise ValidationFailed("Give spider_id or spider_name", details={"spider_id": "Give spider_id or spider_name"})
    spiders = Spider.objects.filter(project__owner=user).select_related("project")
    if project is not None:
        spiders = spiders.filter(project=project)
    if spider_id:
        pk = parse_uuid(spider_id)
        if pk == BUILTIN_SPIDER_ID:
            raise ValidationFailed(QUERY_SPIDER_HINT, details={"spider_id": QUERY_SPIDER_HINT})
        candidates = list(spiders.filter(pk=pk)) if pk else []
    else:
        candidates = list(spiders.filter(name=spider_name)) if _text_ok(spider_name) else []
    runnable, refusals = [], []
    for spider in candidates:
        try:
            runnable.append(RunnableSpider(spider, runnable_version(spider, version)))
        except (ValidationFailed, Conflict) as exc:
            refusals.append(exc)
    if len(runnable) > 1:
        raise ValidationFailed(
            "Spider name is ambiguous",
            details={"spider_name": f"Several of your projects have a spider named {spider_name!r}: give spider_id"},
        )
    if runnable:
        return runnable[0]
    if refusals and version is not None:
        raise refusals[0]
    if refusals:
        raise NotFound(f"Spider not found in the current version of project {candidates[0].project.name}",
                       details={"spider_name" if spider_name else "spider_id": refusals[0].message})
    if spider_name == QUERY_SPIDER and project is None:
        raise ValidationFailed(QUERY_SPIDER_HINT, details={"spider_name": QUERY_SPIDER_HINT})
    raise NotFound("Spider not found")
