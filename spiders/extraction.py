"""Query validation and extraction for the query spider.

Pure on purpose: the platform's API imports `validate_queries` to reject bad queries before a job
is saved, so this module must import quickly, touch neither Scrapy nor Django, and run the very
same parsel machinery the spider uses (what validates also runs).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from cssselect import SelectorError
from lxml import etree
from parsel import Selector
from parsel.csstranslator import HTMLTranslator

QUERY_TYPES = ("xpath", "css", "regex")
MAX_QUERY_LENGTH = 10_000
MAX_NAME_LENGTH = 100
MAX_QUERIES = 100
RESERVED_NAMES = frozenset({"url"})

_FIELDS = frozenset({"name", "type", "query", "join", "all"})
_REQUIRED = "This field is required"
_NON_EMPTY = "Must be a non-empty string"

# XPath compiles lazily in libxml2: an unknown function or an unbound variable only fails when the
# step holding it is evaluated, so validation also runs the query on a small page with common tags.
_SAMPLE_HTML = (
    '<html><head><title>t</title><meta name="m" content="c"></head><body>'
    '<div id="d" class="c"><h1>h</h1><p class="c">p <span>s</span></p>'
    '<a href="/a" class="c">a</a><img src="/i.png" alt="i"><ul><li>l</li></ul>'
    "<table><tr><th>h</th><td>d</td></tr></table></div></body></html>"
)


@functools.lru_cache(maxsize=1)
def _sample() -> Selector:
    """Return the parsed sample page, built on first use so importing stays side-effect free."""
    return Selector(text=_SAMPLE_HTML)


@functools.lru_cache(maxsize=1)
def _translator() -> HTMLTranslator:
    """Return the CSS translator parsel uses for HTML (it knows ::text and ::attr())."""
    return HTMLTranslator()


@functools.lru_cache(maxsize=256)
def _compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile a regex once; extraction runs the same few patterns on every page."""
    return re.compile(pattern)


def _xpath_error(query: str) -> str | None:
    """Return why an XPath expression cannot run under parsel, or None if it can."""
    sample = _sample()
    try:
        # Same namespaces (re:, set:) and global extension functions (has-class) as parsel.
        etree.XPath(query, namespaces=sample.namespaces)(sample.root)
    except (etree.XPathError, ValueError) as exc:
        # parsel's own extension functions raise ValueError("XPath error: ...").
        return f"Invalid XPath: {str(exc).removeprefix('XPath error: ')}"
    return None


def _css_error(query: str) -> str | None:
    """Return why a CSS selector cannot run under parsel, or None if it can."""
    try:
        xpath = _translator().css_to_xpath(query)
    except SelectorError as exc:
        return f"Invalid CSS selector: {exc}"
    error = _xpath_error(xpath)
    return f"Invalid CSS selector: {error}" if error else None


def _regex_error(query: str) -> str | None:
    """Return why a regular expression does not compile, or None if it does."""
    try:
        _compile_regex(query)
    except re.error as exc:
        return f"Invalid regular expression: {exc}"
    return None


_CHECKS = {"xpath": _xpath_error, "css": _css_error, "regex": _regex_error}


def _validate_query(query: dict[str, Any], path: str, seen: set[str]) -> dict[str, str]:
    """Validate one query object; `seen` collects names to find duplicates."""
    errors: dict[str, str] = {}
    for key in query:
        if key not in _FIELDS:
            errors[f"{path}.{key}"] = "Unknown field"

    name = query.get("name")
    if "name" not in query:
        errors[f"{path}.name"] = _REQUIRED
    elif not isinstance(name, str) or not name.strip():
        errors[f"{path}.name"] = _NON_EMPTY
    elif len(name) > MAX_NAME_LENGTH:
        errors[f"{path}.name"] = f"At most {MAX_NAME_LENGTH} characters"
    elif name in RESERVED_NAMES:
        errors[f"{path}.name"] = f"{name!r} is reserved"
    elif name in seen:
        errors[f"{path}.name"] = f"Duplicate query name {name!r}"
    else:
        seen.add(name)

    type_ = query.get("type")
    if "type" not in query:
        errors[f"{path}.type"] = _REQUIRED
    elif type_ not in QUERY_TYPES:
        errors[f"{path}.type"] = f"Must be one of: {', '.join(QUERY_TYPES)}"

    text = query.get("query")
    if "query" not in query:
        errors[f"{path}.query"] = _REQUIRED
    elif not isinstance(text, str) or not text.strip():
        errors[f"{path}.query"] = _NON_EMPTY
    elif len(text) > MAX_QUERY_LENGTH:
        errors[f"{path}.query"] = f"At most {MAX_QUERY_LENGTH} characters"
    elif type_ in _CHECKS and (error := _CHECKS[type_](text)):
        errors[f"{path}.query"] = error

    join = query.get("join", False)
    if not isinstance(join, (bool, str)):
        errors[f"{path}.join"] = "Must be a boolean or a separator string"
    all_ = query.get("all", False)
    if not isinstance(all_, bool):
        errors[f"{path}.all"] = "Must be a boolean"
    elif all_ and _joins(join):
        errors[f"{path}.all"] = "Cannot be combined with join"
    return errors


def _joins(join: object) -> bool:
    """Tell whether `join` asks for joining; any string, even "", is a separator."""
    return join is True or isinstance(join, str)


def validate_queries(queries: object) -> dict[str, str]:
    """Return validation errors keyed by path (e.g. "queries[0].type"); empty if all are valid."""
    if not isinstance(queries, list) or not queries:
        return {"queries": "Must be a non-empty list of queries"}
    if len(queries) > MAX_QUERIES:
        return {"queries": f"At most {MAX_QUERIES} queries"}
    errors: dict[str, str] = {}
    seen: set[str] = set()
    for index, query in enumerate(queries):
        path = f"queries[{index}]"
        if not isinstance(query, dict):
            errors[path] = "Must be an object"
        else:
            errors.update(_validate_query(query, path, seen))
    return errors


def _regex_matches(pattern: str, text: str) -> list[str]:
    """Return group 1 of every match if the pattern has groups, else every whole match."""
    compiled = _compile_regex(pattern)
    if compiled.groups:
        return [m.group(1) for m in compiled.finditer(text) if m.group(1) is not None]
    return [m.group(0) for m in compiled.finditer(text)]


def _matches(selector: Selector, query: dict[str, Any], text: str | None) -> list[str]:
    """Run one (valid) query and return its raw string matches."""
    type_, expression = query["type"], query["query"]
    if type_ == "xpath":
        return selector.xpath(expression).getall()
    if type_ == "css":
        return selector.css(expression).getall()
    return _regex_matches(expression, selector.get() if text is None else text)


def extract(
    selector: Selector, queries: list[dict[str, Any]], *, text: str | None = None
) -> dict[str, Any]:
    """Run validated queries on a page and return {name: value} in query order."""
    result: dict[str, Any] = {}
    for query in queries:
        matches = _matches(selector, query, text)
        values = [stripped for match in matches if (stripped := match.strip())]
        join = query.get("join", False)
        if query.get("all", False):
            result[query["name"]] = values
        elif _joins(join):
            separator = " " if join is True else join
            result[query["name"]] = separator.join(values) if values else None
        else:
            result[query["name"]] = values[0] if values else None
    return result
