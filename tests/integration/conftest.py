"""Real services for integration tests: the fixture website, Scrapyd nodes and a Celery worker."""

from __future__ import annotations

from collections import Counter

import pytest
from django.conf import settings

from nodes.models import Node
from tests.support import FixtureSite, free_port, start_fetcher, start_scrapyd, start_worker

# `make test` hands integration modules to two pytest-xdist workers (--dist loadfile) in collection order:
# the longest go first, so that one of them does not end the run alone while the other worker idles.
LONGEST_FIRST = ("test_schedules.py", "test_faults.py")  # test_topology.py: a phase of its own (Makefile)


def pytest_collection_modifyitems(config, items):
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the others keep their order
    # schemathesis's items (one per API operation: test_schema_contract.py) all get their function's node
    # id under pytest 9.2 (a NodeId built from `originalname`), and pytest-xdist hands out tests by node id:
    # 65 of 66 never ran. Each gets the id its name says.
    seen = Counter(item.nodeid for item in items)
    for item in items:
        if seen[item.nodeid] > 1:
            item._id = type(item._id).parse(f"{item.nodeid.rpartition('::')[0]}::{item.name}")
    assert len({item.nodeid for item in items}) == len(items), "two tests with one node id"


@pytest.fixture(scope="session")
def site():
    server = FixtureSite()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def refused_url() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/"


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def scrapyd_a(services_dir):
    process, url = start_scrapyd("scrapyd-a", services_dir)
    yield url
    process.stop()


@pytest.fixture(scope="session")
def scrapyd_b(services_dir):
    process, url = start_scrapyd("scrapyd-b", services_dir)
    yield url
    process.stop()


@pytest.fixture(scope="session")
def worker(services_dir, live_server, django_db_setup, django_db_blocker):
    """A Celery worker process sharing the test database; crawls report to the live server."""
    database = settings.DATABASES["default"]["NAME"]
    process = start_worker(services_dir, database_path=str(database), public_url=live_server.url)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def fetcher_url(services_dir):
    """A real fetcher service (`manage.py runfetcher`) for the whole session: its base URL."""
    process, url = start_fetcher(services_dir)
    yield url
    process.stop()


@pytest.fixture
def fetcher(fetcher_url, settings) -> str:
    """The session's fetcher service, which the platform (FETCHER_URLS) uses in this test: its base URL."""
    settings.FETCHER_URLS = [fetcher_url]
    return fetcher_url


@pytest.fixture
def node_a(transactional_db, scrapyd_a) -> Node:
    return Node.objects.create(name="node-a", url=scrapyd_a, slots=4)


@pytest.fixture
def node_b(transactional_db, scrapyd_b) -> Node:
    return Node.objects.create(name="node-b", url=scrapyd_b, slots=4)


@pytest.fixture
def platform(transactional_db, worker, live_server, settings):
    """The platform as a worker sees it: the test process serves crawl reports through live_server."""
    settings.PLATFORM_PUBLIC_URL = live_server.url
    return live_server
