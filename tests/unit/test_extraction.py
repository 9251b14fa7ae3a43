"""Unit tests for spiders.extraction: running queries on a page and validating them."""

from __future__ import annotations

import time
from typing import Any

import pytest
from lxml import etree
from parsel import Selector

from spiders import extraction
from spiders.extraction import (
    EXSLT_REGEXP,
    MAX_QUERIES,
    REGEX_TIMEOUT_SECONDS,
    ExtractionError,
    extract,
    validate_queries,
)

PAGE = """<html><head><title>  Café Menu  </title></head><body>
<h1 class="title main">Daily <b>specials</b></h1>
<ul id="items">
  <li class="item" data-price="3.50"> Espresso </li>
  <li class="item" data-price="4.20">   </li>
  <li class="item" data-price="5.00">Crème brûlée</li>
</ul>
<a href="/next?page=2">next</a>
<p class="note">Call 555-1234 or 555-9876</p>
</body></html>"""


def q(name: str, type_: str, query: str, **options: Any) -> dict[str, Any]:
    """Build a query dict."""
    return {"name": name, "type": type_, "query": query, **options}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(q("t", "xpath", "//title/text()"), "Café Menu", id="xpath-first-stripped"),
        pytest.param(q("t", "xpath", "//li/text()"), "Espresso", id="xpath-first-of-many"),
        pytest.param(q("t", "xpath", "//table/text()"), None, id="xpath-none"),
        pytest.param(q("t", "xpath", "//li[2]/text()"), None, id="whitespace-only-dropped"),
        pytest.param(
            q("t", "xpath", "//li/text()", all=True),
            ["Espresso", "Crème brûlée"],
            id="all",
        ),
        pytest.param(q("t", "xpath", "//table/text()", all=True), [], id="all-none"),
        pytest.param(
            q("t", "xpath", "//li/text()", join=True), "Espresso Crème brûlée", id="join-space"
        ),
        pytest.param(
            q("t", "xpath", "//li/text()", join=" | "),
            "Espresso | Crème brûlée",
            id="join-separator",
        ),
        pytest.param(
            q("t", "xpath", "//h1//text()", join=""), "Dailyspecials", id="join-empty-separator"
        ),
        pytest.param(q("t", "xpath", "//table/text()", join=True), None, id="join-none"),
        pytest.param(
            q("t", "xpath", "//li/text()", join=False, all=False), "Espresso", id="explicit-false"
        ),
        pytest.param(q("t", "xpath", "count(//li)"), "3.0", id="xpath-number"),
        pytest.param(
            q("t", "xpath", "//h1[has-class('main')]/b/text()"), "specials", id="has-class"
        ),
        pytest.param(
            q("t", "xpath", "//li[re:test(@data-price, '^4')]/@data-price"), "4.20", id="exslt-re"
        ),
        pytest.param(q("t", "css", "h1.title b::text"), "specials", id="css-text"),
        pytest.param(q("t", "css", "a::attr(href)"), "/next?page=2", id="css-attr"),
        pytest.param(
            q("t", "css", "li.item::attr(data-price)", all=True),
            ["3.50", "4.20", "5.00"],
            id="css-attr-all",
        ),
        pytest.param(q("t", "css", "table::text"), None, id="css-none"),
        pytest.param(q("t", "regex", r"\d{3}-\d{4}"), "555-1234", id="regex-whole-match"),
        pytest.param(
            q("t", "regex", r"555-(\d{4})", all=True), ["1234", "9876"], id="regex-group-1"
        ),
        pytest.param(
            q("t", "regex", r"data-price=\"(\d)\.(\d+)\"", all=True),
            ["3", "4", "5"],
            id="regex-first-of-several-groups",
        ),
        pytest.param(
            q("t", "regex", r"(?:x(\d))|(Espresso)", all=True), [], id="regex-none-group-skipped"
        ),
        pytest.param(q("t", "regex", r"zzz(\d)"), None, id="regex-none"),
        pytest.param(q("t", "regex", r"Crème (\w+)"), "brûlée", id="regex-unicode"),
    ],
)
def test_extract_single_query(query: dict[str, Any], expected: Any) -> None:
    """Each query option yields the documented value."""
    assert extract(Selector(text=PAGE), [query]) == {"t": expected}


def test_extract_keeps_query_order_and_names() -> None:
    """The result has one key per query, in query order."""
    queries = [
        q("z", "css", "title::text"),
        q("a", "xpath", "//a/@href"),
        q("m", "regex", r"Call (\d+)"),
    ]
    result = extract(Selector(text=PAGE), queries)
    assert list(result) == ["z", "a", "m"]
    assert result == {"z": "Café Menu", "a": "/next?page=2", "m": "555"}


def test_extract_regex_uses_text_when_given() -> None:
    """With `text`, regexes run on it (the raw response) instead of the serialized tree."""
    raw = "<p>price:   42  </p><!-- secret: 7 -->"
    selector = Selector(text="<p>other</p>")
    queries = [q("price", "regex", r"price:(\s+\d+\s+)"), q("secret", "regex", r"secret: (\d)")]
    assert extract(selector, queries, text=raw) == {"price": "42", "secret": "7"}
    assert extract(selector, queries) == {"price": None, "secret": None}


def test_extract_regex_strips_and_drops_blank_matches() -> None:
    """Regex matches are stripped like selector matches, and blank ones dropped."""
    queries = [q("v", "regex", r"<i>(.*?)</i>", all=True)]
    assert extract(Selector(text=""), queries, text="<i> a </i><i>  </i><i>b</i>") == {
        "v": ["a", "b"]
    }


def test_extract_unicode_text() -> None:
    """Non-ASCII text survives untouched."""
    selector = Selector(text="<p>日本語 — ünïcödé 🙂</p>")
    assert extract(selector, [q("p", "css", "p::text")]) == {"p": "日本語 — ünïcödé 🙂"}


def test_extract_no_queries() -> None:
    """No queries, no fields."""
    assert extract(Selector(text=PAGE), []) == {}


def test_validate_accepts_valid_queries() -> None:
    """A valid set of queries has no errors."""
    queries = [
        q("title", "xpath", "//title/text()"),
        q("price", "css", "li::attr(data-price)", all=True),
        q("phones", "regex", r"555-(\d+)", join=", "),
        q("heading", "xpath", "//h1[has-class('main')]//text()", join=True, all=False),
        q("flag", "css", "a::text", join=False, all=True),
        q("n" * 100, "xpath", "re:test(//a/@href, 'page')"),
    ]
    assert validate_queries(queries) == {}


@pytest.mark.parametrize(
    ("queries", "expected"),
    [
        pytest.param(None, {"queries": "Must be a non-empty list of queries"}, id="none"),
        pytest.param({}, {"queries": "Must be a non-empty list of queries"}, id="dict"),
        pytest.param("//a", {"queries": "Must be a non-empty list of queries"}, id="string"),
        pytest.param([], {"queries": "Must be a non-empty list of queries"}, id="empty"),
        pytest.param(
            [q(f"f{i}", "css", "a") for i in range(MAX_QUERIES + 1)],
            {"queries": "At most 100 queries"},
            id="too-many",
        ),
        pytest.param(["//a"], {"queries[0]": "Must be an object"}, id="not-object"),
        pytest.param(
            [{"type": "css", "query": "a"}],
            {"queries[0].name": "This field is required"},
            id="name-missing",
        ),
        pytest.param(
            [q("", "css", "a")], {"queries[0].name": "Must be a non-empty string"}, id="name-empty"
        ),
        pytest.param(
            [q("  ", "css", "a")], {"queries[0].name": "Must be a non-empty string"}, id="name-blank"
        ),
        pytest.param(
            [q(7, "css", "a")], {"queries[0].name": "Must be a non-empty string"}, id="name-int"
        ),
        pytest.param(
            [q("n" * 101, "css", "a")],
            {"queries[0].name": "At most 100 characters"},
            id="name-too-long",
        ),
        pytest.param(
            [q("url", "css", "a")], {"queries[0].name": "'url' is reserved"}, id="name-reserved"
        ),
        pytest.param(
            [q("title", "css", "a"), q("other", "css", "a"), q("title", "css", "b")],
            {"queries[2].name": "Duplicate query name 'title'"},
            id="name-duplicate",
        ),
        pytest.param(
            [{"name": "a", "query": "a"}],
            {"queries[0].type": "This field is required"},
            id="type-missing",
        ),
        pytest.param(
            [q("a", "jsonpath", "$.a")],
            {"queries[0].type": "Must be one of: xpath, css, regex"},
            id="type-unknown",
        ),
        pytest.param(
            [{"name": "a", "type": "css"}],
            {"queries[0].query": "This field is required"},
            id="query-missing",
        ),
        pytest.param(
            [q("a", "css", " ")], {"queries[0].query": "Must be a non-empty string"}, id="query-blank"
        ),
        pytest.param(
            [q("a", "css", ["a"])],
            {"queries[0].query": "Must be a non-empty string"},
            id="query-list",
        ),
        pytest.param(
            [q("a", "regex", "a" * 10_001)],
            {"queries[0].query": "At most 10000 characters"},
            id="query-too-long",
        ),
        pytest.param(
            [q("a", "xpath", "//a[")],
            {"queries[0].query": "Invalid XPath: Invalid expression"},
            id="xpath-syntax",
        ),
        pytest.param(
            [q("a", "xpath", "//p[nosuch(.)]")],
            {"queries[0].query": "Invalid XPath: Unregistered function"},
            id="xpath-unknown-function",
        ),
        pytest.param(
            [q("a", "xpath", "//a[@href = $target]")],
            {"queries[0].query": "Invalid XPath: Undefined variable"},
            id="xpath-unbound-variable",
        ),
        pytest.param(
            [q("a", "css", "a[")],
            {"queries[0].query": "Invalid CSS selector: Expected ident or '*', got <EOF at 2>"},
            id="css-syntax",
        ),
        pytest.param(
            [q("a", "css", "a::bogus")],
            {"queries[0].query": "Invalid CSS selector: The pseudo-element ::bogus is unknown"},
            id="css-unknown-pseudo",
        ),
        pytest.param(
            [q("a", "regex", "(a")],
            {
                "queries[0].query": (
                    "Invalid regular expression: missing ), unterminated subpattern at position 0"
                )
            },
            id="regex",
        ),
        pytest.param(
            [q("a", "css", "a", join=1)],
            {"queries[0].join": "Must be a boolean or a separator string"},
            id="join-int",
        ),
        pytest.param(
            [q("a", "css", "a", join=None)],
            {"queries[0].join": "Must be a boolean or a separator string"},
            id="join-null",
        ),
        pytest.param(
            [q("a", "css", "a", all="yes")], {"queries[0].all": "Must be a boolean"}, id="all-str"
        ),
        pytest.param(
            [q("a", "css", "a", all=1)], {"queries[0].all": "Must be a boolean"}, id="all-int"
        ),
        pytest.param(
            [q("a", "css", "a", join=True, all=True)],
            {"queries[0].all": "Cannot be combined with join"},
            id="join-and-all",
        ),
        pytest.param(
            [q("a", "css", "a", join=", ", all=True)],
            {"queries[0].all": "Cannot be combined with join"},
            id="join-separator-and-all",
        ),
        pytest.param(
            [q("a", "css", "a", first=True, Type="x")],
            {"queries[0].first": "Unknown field", "queries[0].Type": "Unknown field"},
            id="unknown-fields",
        ),
    ],
)
def test_validate_errors(queries: object, expected: dict[str, str]) -> None:
    """Each kind of invalid input gets its own path and message."""
    assert validate_queries(queries) == expected


def test_validate_reports_every_error_with_its_path() -> None:
    """Errors of several queries and fields are all reported, keyed by path."""
    queries = [
        q("ok", "css", "a::text"),
        "nope",
        {"name": "", "type": "sql", "join": 3, "extra": 1},
        q("ok", "regex", "[", all=True, join="-"),
    ]
    assert validate_queries(queries) == {
        "queries[1]": "Must be an object",
        "queries[2].extra": "Unknown field",
        "queries[2].name": "Must be a non-empty string",
        "queries[2].type": "Must be one of: xpath, css, regex",
        "queries[2].query": "This field is required",
        "queries[2].join": "Must be a boolean or a separator string",
        "queries[3].name": "Duplicate query name 'ok'",
        "queries[3].query": (
            "Invalid regular expression: unterminated character set at position 0"
        ),
        "queries[3].all": "Cannot be combined with join",
    }


def test_validated_queries_run() -> None:
    """Whatever validates also runs on a real page without errors."""
    queries = [
        q("a", "xpath", "//li[has-class('item')]/@data-price", all=True),
        q("b", "css", "ul#items > li:nth-child(odd)::text", join="/"),
        q("c", "xpath", "set:distinct(//li/@class)"),
    ]
    assert validate_queries(queries) == {}
    assert extract(Selector(text=PAGE), queries) == {
        "a": ["3.50", "4.20", "5.00"],
        "b": "Espresso/Crème brûlée",
        "c": "item",
    }


# --- Untrusted patterns: bounded in time and size ------------------------------------------------

CATASTROPHIC = "(a+)+$"
HOSTILE_TEXT = "a" * 100_000 + "!"
HOSTILE_PAGE = f"<html><head><title>{CATASTROPHIC}</title></head><body><p>{HOSTILE_TEXT}</p></body></html>"


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(q("x", "regex", CATASTROPHIC), id="regex"),
        pytest.param(q("x", "xpath", f"//p[re:test(., '{CATASTROPHIC}')]/text()"), id="re:test"),
        pytest.param(q("x", "xpath", f"re:match(//p, '{CATASTROPHIC}')", all=True), id="re:match"),
        pytest.param(q("x", "xpath", f"re:match(//p, '{CATASTROPHIC}', 'g')"), id="re:match-g"),
        pytest.param(q("x", "xpath", f"re:replace(//p, '{CATASTROPHIC}', 'gi', 'b')"), id="re:replace"),
        pytest.param(q("x", "xpath", "//p[re:test(., string(//title))]/text()"), id="pattern-from-page"),
    ],
)
def test_catastrophic_pattern_times_out(query: dict[str, Any]) -> None:
    """(a+)+$ on a 100 KB page ends after the time limit with a clear error, not in hours."""
    assert validate_queries([query]) == {}
    started = time.process_time()
    with pytest.raises(ExtractionError) as info:
        extract(Selector(text=HOSTILE_PAGE), [query], text=HOSTILE_PAGE)
    # Unbounded, this runs for ages; bounded, it ends after about a second. Counted in this process's CPU
    # time: on a machine shared by many processes the wall clock also counts everyone else's turns (11 s seen).
    assert time.process_time() - started < 5
    assert str(info.value) == "Query 'x': regular expression timed out after 1.0 s"
    assert isinstance(info.value, ValueError)  # the spider reports it as "Extraction failed for <url>"
    assert REGEX_TIMEOUT_SECONDS == 1.0


def test_regex_timeout_is_a_keyword() -> None:
    """extract(..., regex_timeout=) sets the limit, per query and for all of an XPath's regexes."""
    page = "<html><body>" + f"<p>{'a' * 30_000}!</p>" * 40 + "</body></html>"
    for query in (q("x", "regex", CATASTROPHIC), q("x", "xpath", f"//p[re:test(., '{CATASTROPHIC}')]")):
        started = time.process_time()
        with pytest.raises(ExtractionError, match=r"^Query 'x': regular expression timed out after 0.2 s$"):
            extract(Selector(text=page), [query], text=page, regex_timeout=0.2)
        # One budget for the whole XPath evaluation: 40 nodes do not take 40 times 0.2 s (of CPU time, which
        # other processes' turns on a shared machine do not inflate).
        assert time.process_time() - started < 4


def test_a_deadline_bounds_the_queries_together() -> None:
    """extract(..., deadline=): no query starts past it, and a regular expression gets only what is left."""
    page = "<html><body>" + f"<p>{'a' * 30_000}!</p>" + "</body></html>"
    with pytest.raises(ExtractionError, match=f"^{extraction.OUT_OF_TIME}$"):
        extract(Selector(text=page), [q("x", "css", "p::text")], text=page, deadline=time.monotonic() - 1)
    started = time.process_time()
    with pytest.raises(ExtractionError, match=f"^{extraction.OUT_OF_TIME}$") as info:
        extract(Selector(text=page), [q("t", "css", "p::text"), q("x", "regex", CATASTROPHIC)], text=page,
                deadline=time.monotonic() + 0.2)
    assert info.value.query == "x" and time.process_time() - started < 0.9  # not its own 1 s
    # Time enough: as without a deadline.
    assert extract(Selector(text=page), [q("t", "css", "p::text")], text=page,
                   deadline=time.monotonic() + 60) == {"t": "a" * 30_000 + "!"}


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(?:a{65535}){65535}", "too large once its repetitions are expanded (at most 10000 elements)"),
        ("(?:[ab]{1000}){1000}", "too large once its repetitions are expanded (at most 10000 elements)"),
        ("(" * 2000 + ")" * 2000, "too deeply nested"),
        ("a{4294967296}", "the repetition number is too large"),
    ],
)
def test_patterns_too_costly_to_compile_are_refused(pattern: str, message: str) -> None:
    """The `regex` engine expands nested repeats when compiling: such patterns are refused unbuilt."""
    assert validate_queries([q("x", "regex", pattern)]) == {
        "queries[0].query": f"Invalid regular expression: {message}"
    }
    xpath = q("x", "xpath", f"//p[re:test(., '{pattern}')]")
    assert validate_queries([xpath]) == {
        "queries[0].query": f"Invalid XPath: Invalid regular expression in XPath: {message}"
    }


def test_bad_patterns_from_pages_fail_the_page() -> None:
    """A pattern an XPath takes from the page is checked too: the page fails, the process survives."""
    page = "<html><head><title>(?:a{65535}){65535}</title></head><body><p>a</p></body></html>"
    with pytest.raises(ValueError, match="too large once its repetitions are expanded"):
        extract(Selector(text=page), [q("x", "xpath", "//p[re:test(., string(//title))]")])


def test_usual_patterns_still_compile() -> None:
    """Realistic patterns stay well within the size cap."""
    queries = [
        q("a", "regex", r"(\d{4})-(\d{2})-(\d{2})"),
        q("b", "regex", r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,255}\.[A-Za-z]{2,24}"),
        q("c", "regex", r"(?:<td[^>]*>.*?</td>\s*){50}"),
        q("d", "regex", "x" * 9_000),
    ]
    assert validate_queries(queries) == {}


@pytest.mark.parametrize(
    "expression",
    [
        "re:test(//li[1], 'ESP', 'i')",
        "re:test(//li[1], 'ESP')",
        "re:test(//nothing, '^$')",
        "re:match(//p[@class='note'], '(\\d+)-(\\d+)')",
        "re:match(//p[@class='note'], '(\\d+)-(\\d+)', 'g')",
        "re:match(//p[@class='note'], '\\d+', 'g')",
        "re:match(//p[@class='note'], 'zzz')",
        "re:match(//h1, 'DAILY (.+)', 'i')",
        "re:match(1.5, '.*')",
        "re:replace(//p[@class='note'], '\\d', 'g', '#')",
        "re:replace(//p[@class='note'], '(\\d+)', '', '<\\1>')",
        "re:replace(//li/@data-price, '\\.', '', ',')",
        "//li[re:test(@data-price, '^[34]')]/text()",
    ],
)
def test_bounded_exslt_functions_agree_with_lxml(expression: str) -> None:
    """The bounded re:test, re:match and re:replace give what lxml's own give."""
    selector = Selector(text=PAGE)
    ours = selector.xpath(expression).getall()
    namespace = etree.FunctionNamespace(EXSLT_REGEXP)
    saved = dict(namespace.items())
    assert saved, "the bounded functions are registered"
    namespace.clear()
    try:
        lxmls = Selector(text=PAGE).xpath(expression).getall()
    finally:
        namespace.update(saved)
    assert ours == lxmls


def test_without_bounded_exslt_functions_xpath_regexes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should lxml stop calling the bounded functions, XPath regex functions are refused instead."""
    monkeypatch.setattr(extraction, "_exslt_bounded", lambda: False)
    refused = "XPath regular-expression functions are not allowed; use a regex query"
    for expression in ("//li[re:test(., 'a')]", "re:match(//p, 'x')", "re : replace(//p, 'a', '', 'b')"):
        assert validate_queries([q("x", "xpath", expression)]) == {"queries[0].query": refused}
        with pytest.raises(ExtractionError, match=f"^Query 'x': {refused}$"):
            extract(Selector(text=PAGE), [q("x", "xpath", expression)])
    assert validate_queries([q("x", "xpath", "//li[has-class('item')]")]) == {}
