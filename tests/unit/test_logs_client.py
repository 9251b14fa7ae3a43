"""ScrapydClient's log reads against Twisted's static files (what Scrapyd serves logs with): every size
of log, every range, and the error paths (a scripted server for what Twisted never answers)."""

from __future__ import annotations

import pytest

from core.errors import NodeUnavailable
from nodes.client import LogNotFound, ScrapydClient, ScrapydError
from tests.scripted import ScriptedSite
from tests.staticlogs import StaticLogServer
from tests.support import free_port

WHERE = {"project": "p", "spider": "s", "job_id": "j"}

LOGS = {
    "empty": b"",
    "one line": b"2026-12-01 [scrapy.core.engine] INFO: Spider opened\n",
    "no newline": b"a line still being written",
    "short": b"".join(b"line %d of a short log\n" % n for n in range(150)),
    "large": b"".join(b"%08d " % n + b"x" * 90 + b"\n" for n in range(30_000)),  # 3 MB
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = StaticLogServer(tmp_path_factory.mktemp("node"))
    yield server
    server.stop()


@pytest.fixture(params=list(LOGS))
def log(request, server):
    content = LOGS[request.param]
    server.log_path(**WHERE).write_bytes(content)
    return content


def client(server) -> ScrapydClient:
    return ScrapydClient(server.url, timeout=5)


def test_size(server, log):
    assert client(server).log_size(**WHERE) == len(log)


@pytest.mark.parametrize("suffix", [1, 10, 1_000, 10**7])
def test_suffix_ranges_of_any_length(server, log, suffix):
    # Twisted answers 500 to a suffix `Range: bytes=-N` longer than the file: the client must not send one.
    chunk = client(server).log(**WHERE, start=-suffix)
    assert chunk.data == log[-suffix:] and chunk.size == len(log)
    assert chunk.start == max(len(log) - suffix, 0)


@pytest.mark.parametrize(("start", "length"), [(0, 1), (0, 100), (5, 10**6), (40, 1), (10**9, 10), (0, 10**8)])
def test_explicit_ranges_and_past_the_end(server, log, start, length):
    chunk = client(server).log(**WHERE, start=start, end=start + length - 1)
    assert chunk.data == log[start : start + length] and chunk.size == len(log)
    assert chunk.start == start  # past the end: an empty chunk where it was asked for, with the size


def test_the_range_at_the_exact_end_is_empty(server, log):
    chunk = client(server).log(**WHERE, start=len(log))
    assert (chunk.data, chunk.start, chunk.size) == (b"", len(log), len(log))


def test_save_streams_from_an_offset(server, log):
    blocks: list[bytes] = []
    chunk = client(server).save_log(**WHERE, start=3, write=blocks.append)
    assert b"".join(blocks) == log[3:] and chunk.size == len(log)
    assert all(len(block) <= 64 * 1024 for block in blocks)


def test_a_missing_log_is_log_not_found(server):
    with pytest.raises(LogNotFound):
        client(server).log_size(project="p", spider="s", job_id="nope")
    with pytest.raises(LogNotFound):
        client(server).log(project="p", spider="s", job_id="nope", start=-10)


def test_an_unreachable_node_is_node_unavailable():
    unreachable = ScrapydClient(f"http://127.0.0.1:{free_port()}/", timeout=2)
    with pytest.raises(NodeUnavailable) as caught:
        unreachable.log(**WHERE, start=0, end=10)
    assert caught.value.status_code == 503


def test_a_server_error_is_a_node_error():
    with ScriptedSite({"": lambda handler, query: handler.send(500, b"boom")}) as site, \
            pytest.raises(ScrapydError) as caught:
        ScrapydClient(site.url, timeout=5).log(**WHERE, start=0, end=10)
    assert caught.value.status_code == 502


def test_a_server_that_ignores_ranges_is_sliced():
    body = LOGS["short"]
    with ScriptedSite({"": lambda handler, query: handler.send(200, body)}) as site:
        chunk = ScrapydClient(site.url, timeout=5).log(**WHERE, start=100, end=199)
    assert chunk.data == body[100:200] and chunk.start == 100 and chunk.size == len(body)
