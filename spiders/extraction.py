"""Query validation and extraction for the query spider.

Pure on purpose: the platform's API imports `validate_queries` to reject bad queries before a job
is saved, so this module must import quickly, touch neither Scrapy nor Django, and run the very
same parsel machinery the spider uses (what validates also runs).

Patterns are untrusted: they run on the `regex` engine with a time limit (REGEX_TIMEOUT_SECONDS),
in regex queries and in XPath's EXSLT functions (re:test, re:match, re:replace) alike, and a
pattern whose repetitions would expand to a huge program is refused before it is compiled. Importing
this module puts the bounded EXSLT functions in place for the whole process (lxml's registry is
global), so every XPath evaluated afterwards, here or in a spider, is bounded too.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections.abc import Iterator
from re import _parser as re_parser  # the stdlib's regex parser: cheap, and expands nothing
from typing import Any

import regex
from cssselect import SelectorError
from lxml import etree
from parsel import Selector
from parsel.csstranslator import HTMLTranslator

QUERY_TYPES = ("xpath", "css", "regex")
MAX_QUERY_LENGTH = 10_000
MAX_NAME_LENGTH = 100
MAX_QUERIES = 100
RESERVED_NAMES = frozenset({"url"})
REGEX_TIMEOUT_SECONDS = 1.0
# `regex` compiles a repeat of a repeat into copies: "(?:a{1000}){1000}" takes ~270 MB to compile,
# "(?:a{65535}){65535}" exhausts memory. Patterns are sized on the stdlib's parse tree first; at
# this cap one costs at most ~3 MB (and the cache below keeps at most 128 of them).
MAX_REGEX_SIZE = 10_000
EXSLT_REGEXP = "http://exslt.org/regular-expressions"


class ExtractionError(ValueError):
    """A valid query could not run on a page, e.g. its regular expression timed out; names the query."""

    def __init__(self, message: str, *, query: str | None = None) -> None:
        super().__init__(message)
        self.query = query

# `validate`: the platform's value rules (quality app, checked there); the spider ignores them.
_FIELDS = frozenset({"name", "type", "query", "join", "all", "validate"})
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
    """Return the parsed sample page, built once."""
    return Selector(text=_SAMPLE_HTML)


@functools.lru_cache(maxsize=1)
def _translator() -> HTMLTranslator:
    """Return the CSS translator parsel uses for HTML (it knows ::text and ::attr())."""
    return HTMLTranslator()


_REPEATS = (re_parser.MAX_REPEAT, re_parser.MIN_REPEAT, re_parser.POSSESSIVE_REPEAT)


def _regex_size(items: Any) -> int:
    """Estimate the nodes `regex` compiles a parsed pattern to: required repeats are copied."""
    size = 0
    for op, av in items:
        if op in _REPEATS:
            low, _high, sub = av
            size += max(low, 1) * _regex_size(sub)
        elif op is re_parser.SUBPATTERN:
            size += _regex_size(av[-1])
        elif op is re_parser.BRANCH:
            size += sum(_regex_size(branch) for branch in av[1])
        elif op in (re_parser.ASSERT, re_parser.ASSERT_NOT):
            size += _regex_size(av[1])
        elif op is re_parser.ATOMIC_GROUP:
            size += _regex_size(av)
        elif op is re_parser.GROUPREF_EXISTS:
            size += _regex_size(av[1]) + (_regex_size(av[2]) if av[2] else 0)
        else:
            size += 1
        if size > MAX_REGEX_SIZE:
            break
    return size


def _compile_regex_uncached(pattern: str, flags: int = 0) -> regex.Pattern[str]:
    """Compile an untrusted pattern, refusing one too large to compile; ValueError if bad."""
    try:
        # Patterns must also parse as the stdlib's `re` (what this platform accepted before `regex`).
        if _regex_size(re_parser.parse(pattern, flags)) > MAX_REGEX_SIZE:
            raise ValueError(f"too large once its repetitions are expanded (at most {MAX_REGEX_SIZE} elements)")
        return regex.compile(pattern, flags)
    except (re.error, regex.error, OverflowError) as exc:
        raise ValueError(str(exc)) from None
    except RecursionError:
        raise ValueError("too deeply nested") from None


# Extraction runs the same few patterns on every page; validation does not fill this cache. XPath
# functions get a smaller one of their own: their patterns may come from pages (re:test(., //title)).
_compile_regex = functools.lru_cache(maxsize=128)(_compile_regex_uncached)
_compile_xpath_regex = functools.lru_cache(maxsize=32)(_compile_regex_uncached)


class _RegexTimedOut(TimeoutError):
    """A regular expression ran out of time (extract turns it into an ExtractionError naming the query)."""

    def __init__(self) -> None:
        super().__init__("regular expression timed out")


# Deadline for the EXSLT functions of the XPath evaluation under way in this thread (lxml calls
# them synchronously, in the evaluating thread).
_budget = threading.local()


@contextlib.contextmanager
def _regex_budget(seconds: float) -> Iterator[None]:
    """Give the regular expressions of one XPath evaluation `seconds` in all."""
    previous = getattr(_budget, "deadline", None)
    _budget.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _budget.deadline = previous


def _time_left() -> float:
    deadline = getattr(_budget, "deadline", None)
    if deadline is None:
        return REGEX_TIMEOUT_SECONDS
    left = deadline - time.monotonic()
    if left <= 0:
        raise _RegexTimedOut
    return left


def _xpath_string(value: Any) -> str:
    """An XPath argument as a string, as lxml's own EXSLT functions read it."""
    if isinstance(value, list):
        if not value:
            return ""
        value = value[0]
        if isinstance(value, etree._Element):
            return str(value.xpath("string()"))
    return str(value)


def _xpath_regex(pattern: Any, flags: Any) -> regex.Pattern[str]:
    try:
        return _compile_xpath_regex(_xpath_string(pattern), regex.IGNORECASE if "i" in _xpath_string(flags) else 0)
    except ValueError as exc:
        raise ValueError(f"Invalid regular expression in XPath: {exc}") from None


def _exslt_test(context: Any, s: Any, pattern: Any, flags: Any = "") -> bool:
    """re:test(string, pattern, flags?): whether the pattern matches."""
    try:
        return _xpath_regex(pattern, flags).search(_xpath_string(s), timeout=_time_left()) is not None
    except TimeoutError:
        raise _RegexTimedOut from None


def _exslt_match(context: Any, s: Any, pattern: Any, flags: Any = "") -> list[Any]:
    """re:match(string, pattern, flags?): <match> nodes, of the match and its groups (or of all matches with "g")."""
    compiled, text = _xpath_regex(pattern, flags), _xpath_string(s)
    try:
        if "g" in _xpath_string(flags):
            found = ["".join(m) if isinstance(m, tuple) else m for m in compiled.findall(text, timeout=_time_left())]
        else:
            match = compiled.search(text, timeout=_time_left())
            found = [match.group(), *match.groups("")] if match else []
    except TimeoutError:
        raise _RegexTimedOut from None
    root = etree.Element("matches")
    nodes = []
    for value in found:
        node = etree.SubElement(root, "match")
        node.text = value
        nodes.append(node)
    return nodes


def _exslt_replace(context: Any, s: Any, pattern: Any, flags: Any, replacement: Any) -> str:
    """re:replace(string, pattern, flags, replacement): the first (or with "g" every) match replaced."""
    count = 0 if "g" in _xpath_string(flags) else 1
    try:
        return _xpath_regex(pattern, flags).sub(
            _xpath_string(replacement), _xpath_string(s), count=count, timeout=_time_left()
        )
    except TimeoutError:
        raise _RegexTimedOut from None


_probe = threading.local()


def _probe_test(context: Any, *args: Any) -> bool:
    _probe.called = True
    return True


@functools.lru_cache(maxsize=1)
def _exslt_bounded() -> bool:
    """Put the bounded EXSLT functions in place of lxml's (which use `re`, without a time limit).

    lxml registers its own re: functions in every XPath context and functions of a global
    FunctionNamespace after them, so ours win (lxml 6.1). Whether they do is checked here, through
    the same calls parsel and validation make; if not, XPath regex functions are refused instead.
    """
    namespace = etree.FunctionNamespace(EXSLT_REGEXP)
    sample = _sample()
    for name in ("test", "match", "replace"):
        namespace[name] = _probe_test
        expression = f"re:{name}('a', 'a', '', 'b')" if name == "replace" else f"re:{name}('a', 'a')"
        for parsel_path in (True, False):
            _probe.called = False
            with contextlib.suppress(Exception):
                if parsel_path:
                    sample.xpath(expression)
                else:
                    etree.XPath(expression, namespaces=sample.namespaces)(sample.root)
            if not _probe.called:
                namespace.clear()  # leave lxml's own functions in place, and refuse them
                return False
    namespace.update({"test": _exslt_test, "match": _exslt_match, "replace": _exslt_replace})
    return True


# Without bounded EXSLT functions: calls of re:test/match/replace, whatever the prefix's spelling.
_EXSLT_CALL = re.compile(r"\bre\s*:\s*(?:test|match|replace)\s*\(")
_EXSLT_REFUSED = "XPath regular-expression functions are not allowed; use a regex query"


# XPath 1.0 string literals (no escapes): what is outside them is the expression's own syntax.
_XPATH_LITERAL = re.compile(r"\"[^\"]*\"|'[^']*'")
_VARIABLES_REFUSED = "Invalid XPath: Undefined variable"  # as libxml2 says it where it evaluates one


def _xpath_error(query: str) -> str | None:
    """Return why an XPath expression cannot run under parsel, or None if it can."""
    if not _exslt_bounded() and _EXSLT_CALL.search(query):
        return _EXSLT_REFUSED
    if "$" in _XPATH_LITERAL.sub("", query):
        # Unbound wherever it is; found by the sample page below only in a step that page reaches.
        return _VARIABLES_REFUSED
    sample = _sample()
    try:
        # Same namespaces (re:, set:) and global extension functions (has-class) as parsel.
        with _regex_budget(REGEX_TIMEOUT_SECONDS):
            etree.XPath(query, namespaces=sample.namespaces)(sample.root)
    except (etree.XPathError, ValueError) as exc:
        # parsel's own extension functions raise ValueError("XPath error: ...").
        return f"Invalid XPath: {str(exc).removeprefix('XPath error: ')}"
    except _RegexTimedOut:
        return f"Invalid XPath: its regular expressions take over {REGEX_TIMEOUT_SECONDS} s on a tiny page"
    return None


def _css_error(query: str) -> str | None:
    """Return why a CSS selector cannot run under parsel, or None if it can."""
    try:
        xpath = _translator().css_to_xpath(query)
    except SelectorError as exc:
        return f"Invalid CSS selector: {exc}"
    error = _xpath_error(xpath)
    return f"Invalid CSS selector: {error}" if error else None


def regex_error(query: str) -> str | None:
    """Return why a regular expression does not compile, or None if it does."""
    try:
        _compile_regex_uncached(query)
    except ValueError as exc:
        return f"Invalid regular expression: {exc}"
    return None


_CHECKS = {"xpath": _xpath_error, "css": _css_error, "regex": regex_error}


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


def _regex_matches(pattern: str, text: str, timeout: float) -> list[str]:
    """Return group 1 of every match if the pattern has groups, else every whole match."""
    compiled = _compile_regex(pattern)
    try:
        # The timeout bounds the whole scan, however many matches it yields.
        if compiled.groups:
            return [m.group(1) for m in compiled.finditer(text, timeout=timeout) if m.group(1) is not None]
        return [m.group(0) for m in compiled.finditer(text, timeout=timeout)]
    except TimeoutError:
        raise _RegexTimedOut from None


def _matches(selector: Selector, query: dict[str, Any], text: str | None, timeout: float) -> list[str]:
    """Run one (valid) query and return its raw string matches."""
    type_, expression = query["type"], query["query"]
    if type_ == "regex":
        return _regex_matches(expression, selector.get() if text is None else text, timeout)
    if not _exslt_bounded() and type_ == "xpath" and _EXSLT_CALL.search(expression):
        raise ExtractionError(f"Query {query['name']!r}: {_EXSLT_REFUSED}", query=query["name"])
    # _regex_budget, inline: this runs for every query on every page of a crawl.
    previous = getattr(_budget, "deadline", None)
    _budget.deadline = time.monotonic() + timeout
    try:
        if type_ == "xpath":
            return selector.xpath(expression).getall()
        return selector.css(expression).getall()
    finally:
        _budget.deadline = previous


OUT_OF_TIME = "Out of time extracting the data"


def extract(
    selector: Selector,
    queries: list[dict[str, Any]],
    *,
    text: str | None = None,
    regex_timeout: float = REGEX_TIMEOUT_SECONDS,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Run validated queries on a page and return {name: value} in query order.

    Raises ExtractionError (a ValueError naming the query) when a query's regular expressions run
    out of time or an XPath fails on this page. `deadline` (time.monotonic()) bounds several
    extractions together (a page's items, a request's time): no query's regular expressions get more
    than what is left of it, none starts past it (ExtractionError OUT_OF_TIME).
    """
    result: dict[str, Any] = {}
    for query in queries:
        name = query["name"]
        timeout = regex_timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ExtractionError(OUT_OF_TIME, query=name)
            timeout = min(timeout, left)
        try:
            matches = _matches(selector, query, text, timeout)
        except _RegexTimedOut:
            if timeout < regex_timeout:  # cut short by the deadline
                raise ExtractionError(OUT_OF_TIME, query=name) from None
            raise ExtractionError(
                f"Query {name!r}: regular expression timed out after {regex_timeout} s", query=name
            ) from None
        except ExtractionError as exc:
            exc.query = name
            raise
        except ValueError as exc:
            raise ExtractionError(f"Query {name!r}: {exc}", query=name) from None
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


_exslt_bounded()
