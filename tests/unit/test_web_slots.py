"""A web process waits on at most SYNC_WEB_SLOTS sync calls at once; past them a call is refused at once
(503, Retry-After), so slow pages never hold every web thread (tests/integration/test_runplatform.py
shows it on the running platform)."""

from __future__ import annotations

import socket
import threading

import pytest

from fetchers import client
from fetchers.client import FetchersBusy, FetchersUnavailable, FetchSpec


@pytest.fixture
def slots(settings):
    settings.SYNC_WEB_SLOTS = 2
    assert client.web_slots.busy == 0
    yield client.web_slots
    assert client.web_slots.busy == 0  # every slot taken was given back


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there once closed


def test_past_the_slots_a_call_is_busy_without_reaching_a_fetcher(slots):
    spec = FetchSpec(url="http://127.0.0.1/")
    with slots, slots:
        with pytest.raises(FetchersBusy) as busy:
            client.fetch(spec, urls=[refused_url()])
        assert busy.value.retry_after == 1 and "SYNC_WEB_SLOTS 2" in str(busy.value)
    # A slot free again: the call goes on to the fetchers (none answers here).
    with pytest.raises(FetchersUnavailable):
        client.fetch(spec, urls=[refused_url()])


def test_a_call_that_fails_gives_its_slot_back(slots):
    for _ in range(5):
        with pytest.raises(FetchersUnavailable):
            client.fetch(FetchSpec(url="http://127.0.0.1/"), urls=[refused_url()])


def test_threads_racing_for_the_slots_get_exactly_that_many(slots):
    start, release = threading.Barrier(12), threading.Event()
    got, refused = [], []

    def take():
        start.wait()
        try:
            with slots:
                got.append(1)
                release.wait(10)
        except FetchersBusy:
            refused.append(1)

    threads = [threading.Thread(target=take) for _ in range(12)]
    for thread in threads:
        thread.start()
    while len(got) + len(refused) < 12 and len(refused) < 10:
        threading.Event().wait(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    assert (len(got), len(refused)) == (2, 10)


def test_the_setting_is_read_at_each_call(slots, settings):
    with slots:
        settings.SYNC_WEB_SLOTS = 1
        with pytest.raises(FetchersBusy):
            slots.__enter__()
        settings.SYNC_WEB_SLOTS = 3
        with slots:
            assert slots.busy == 2


@pytest.mark.django_db
def test_a_preview_that_fetches_a_page_takes_a_slot_too(api, slots):
    queries = [{"name": "h", "type": "css", "query": "h1::text"}]
    with slots, slots:
        busy = api.post("/api/v1/jobs/preview", {"url": "http://127.0.0.1/", "queries": queries}, format="json")
        assert busy.status_code == 503 and busy["Retry-After"] == "1"
        assert busy.json()["error"] == "service_unavailable"
        # On given HTML nothing is fetched: no slot needed.
        given = api.post("/api/v1/jobs/preview", {"html": "<h1>x</h1>", "queries": queries}, format="json")
        assert given.status_code == 200 and given.json()["item"]["h"] == "x"
