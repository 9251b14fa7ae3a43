"""The client's pure parts: the error body as typed exceptions, the config file, waits, the CLI's parser and tables."""

from __future__ import annotations

import io
import json
import stat

import pytest
from scrapy_platform_client import cli, config, errors
from scrapy_platform_client.output import table
from scrapy_platform_client.waiting import poll


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "validation_error", errors.ValidationError),
        (400, "parse_error", errors.BadRequest),
        (401, "authentication_failed", errors.AuthenticationError),
        (403, "country_not_approved", errors.PermissionDenied),
        (404, "not_found", errors.NotFound),
        (409, "illegal_transition", errors.IllegalTransition),
        (409, "not_ready", errors.Conflict),
        (410, "expired", errors.Gone),
        (429, "rate_limited", errors.RateLimited),
        (429, "quota_exceeded", errors.QuotaExceeded),
        (500, "internal_error", errors.ServerError),
        (502, "node_error", errors.ServerError),
        (503, "node_unavailable", errors.ServiceUnavailable),
        (418, "teapot", errors.PlatformError),
    ],
)
def test_error_codes_and_statuses_map_to_exception_classes(status, code, cls):
    body = {"error": code, "message": "Something", "details": {"queries[0].type": "Must be one of: xpath, css, regex"}}
    error = errors.from_response(status, body)
    assert type(error) is cls and isinstance(error, errors.PlatformError)
    assert (error.status, error.code, error.message) == (status, code, "Something")
    assert error.details == {"queries[0].type": "Must be one of: xpath, css, regex"}
    assert str(error) == f"{code}: Something (queries[0].type: Must be one of: xpath, css, regex)"


def test_retry_after_comes_from_the_body_or_the_header():
    assert errors.from_response(429, {"error": "rate_limited", "message": "x", "retry_after": 7}).retry_after == 7
    assert errors.from_response(503, {"error": "service_unavailable", "message": "x"}, {"Retry-After": "3"}).retry_after == 3
    assert errors.from_response(503, {"error": "service_unavailable", "message": "x"}).retry_after is None


def test_an_answer_that_is_not_the_error_body_keeps_its_text():
    error = errors.from_response(502, None, {}, "<html>Bad gateway</html>")
    assert type(error) is errors.ServerError and error.code == "error" and "Bad gateway" in error.message
    assert errors.from_response(500, None).message == "HTTP 500"


def test_wait_timeout_is_a_timeout_error_and_keeps_the_last_value():
    fetched = []

    def fetch() -> int:
        fetched.append(len(fetched))
        return fetched[-1]

    with pytest.raises(errors.WaitTimeout) as caught:
        poll(fetch, lambda n: False, timeout=0.05, what="nothing", sleep=lambda s: None)
    assert isinstance(caught.value, TimeoutError) and caught.value.last == fetched[-1]
    assert "nothing" in caught.value.message
    assert poll(lambda: 5, lambda n: n == 5, timeout=0, what="five") == 5


def test_poll_backs_off_up_to_five_seconds():
    sleeps: list[float] = []
    values = iter(range(12))
    assert poll(lambda: next(values), lambda n: n == 11, timeout=None, what="n", sleep=sleeps.append) == 11
    assert sleeps[0] == 0.5 and sleeps == sorted(sleeps) and max(sleeps) == 5.0


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    for name in (config.ENV_URL, config.ENV_KEY, config.ENV_CONFIG):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "scrapy-platform" / "config.json"


def test_config_is_stored_for_the_user_only_and_env_overrides_it(config_file, monkeypatch):
    assert config.config_path() == config_file
    assert config.load() == config.Settings(None, None)
    config.save("http://platform:8000", "secret")
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_file.parent.stat().st_mode) == 0o700
    assert json.loads(config_file.read_text()) == {"url": "http://platform:8000", "key": "secret"}
    assert config.load() == config.Settings("http://platform:8000", "secret")
    monkeypatch.setenv(config.ENV_KEY, "from-env")
    assert config.load() == config.Settings("http://platform:8000", "from-env")
    assert config.load(url="http://flag", key="flag") == config.Settings("http://flag", "flag")
    assert config.forget() and not config_file.exists() and not config.forget()


def test_cli_usage_errors_exit_2(config_file, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["jobs"])  # no action
    assert caught.value.code == cli.EXIT_USAGE
    with pytest.raises(SystemExit) as caught:
        cli.main(["items", "RUN", "--format", "yaml"])
    assert caught.value.code == cli.EXIT_USAGE
    assert cli.main(["runs", "list"]) == cli.EXIT_USAGE  # nothing configured
    assert "scrapy-platform login" in capsys.readouterr().err


def test_json_flag_is_accepted_before_and_after_the_command():
    parser = cli.build_parser()
    assert parser.parse_args(["--json", "runs", "list"]).json is True
    assert parser.parse_args(["runs", "list", "--json"]).json is True
    assert not hasattr(parser.parse_args(["runs", "list"]), "json")


def test_tables_align_columns_and_shorten_long_cells():
    out = io.StringIO()
    rows = [{"id": "a", "name": "x" * 100, "tags": ["p", "q"]}, {"id": "bbb", "name": None, "tags": []}]
    table(rows, [("id", lambda r: r["id"]), ("name", lambda r: r["name"]), ("tags", lambda r: r["tags"])], out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["ID", "NAME", "TAGS"]
    assert lines[1].startswith("a    " + "x" * 59 + "…") and lines[1].endswith("p, q")
    assert lines[2].split() == ["bbb", "-"]


def test_scrape_command_parses_queries_and_keeps_the_platform_url_option_apart():
    args = cli.build_parser().parse_args(["scrape", "https://example.com/", "--url", "http://127.0.0.1:8000",
                                          "-q", "name", "xpath", "//h1/text()", "--format", "pdf", "-o", "-"])
    assert args.page_url == "https://example.com/" and args.url == "http://127.0.0.1:8000"
    assert args.query == [["name", "xpath", "//h1/text()"]] and args.format == "pdf" and args.output == "-"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["scrape", "https://example.com/", "--format", "gif"])
    assert cli.build_parser().parse_args(["files", "get", "ID"]).action == "get"


def test_scrape_and_download_results_decode_their_bytes():
    import base64

    from scrapy_platform_client.models import DownloadResult, ScrapeResult

    png = b"\x89PNG\r\n"
    shot = ScrapeResult(None, {"job_id": "j", "statusCode": 200, "html": "<p>", "screenshot": base64.b64encode(png).decode(),
                               "content_type": "image/png"})
    assert shot.screenshot == png and shot.content == png and shot.ok
    pdf = ScrapeResult(None, {"job_id": "j", "statusCode": 200, "html": "<p>", "content_type": "application/pdf"})
    assert pdf.content is None and pdf.captured  # a PDF is only in the capture
    missing = ScrapeResult(None, {"job_id": "j", "statusCode": 404, "html": "<h1>Not found</h1>", "content_type": "text/html"})
    assert missing.content == b"<h1>Not found</h1>" and missing.captured and not missing.ok
    refused = ScrapeResult(None, {"job_id": "j", "statusCode": 500, "html": None, "content_type": "text/html"})
    assert (refused.content, refused.captured, refused.ok) == (None, False, False)
    raw = ScrapeResult(None, {"job_id": "j", "statusCode": 200, "content_type": "application/pdf"}, content=b"%PDF-1.4")
    assert raw.content == b"%PDF-1.4" and raw.ok
    file = DownloadResult(None, {"job_id": "j", "statusCode": 200, "content": base64.b64encode(b"\x00\x01").decode(),
                                 "contentType": "application/octet-stream"})
    assert file.content == b"\x00\x01" and file.ok and file.content_type == "application/octet-stream"
    failed = DownloadResult(None, {"job_id": "j", "statusCode": 504, "content": None, "contentType": None})
    assert (failed.content, failed.ok, failed.content_type) == (None, False, None)
