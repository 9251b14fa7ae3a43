"""Fixtures for every test: users with API keys and API clients that authenticate with them."""

from __future__ import annotations

import shutil

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from core.models import ApiKey


def pytest_sessionfinish(session, exitstatus):
    # DATA_DIR is a temporary folder made by config.test_settings for this session.
    if settings.DATA_DIR.name.startswith("platform-test-"):
        shutil.rmtree(settings.DATA_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counts are keyed by API-key ids, which the next test's database reuses (so are the
    users' ids that remembered plans are keyed by: core.memo)."""
    from django.core.cache import cache

    from core.memo import SharedMemo

    cache.clear()
    SharedMemo.clear_all()
    yield


def make_client(user) -> APIClient:
    _, raw = ApiKey.issue(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    client.raw_key = raw
    return client


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("mallory")


@pytest.fixture
def api(user) -> APIClient:
    return make_client(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return make_client(other_user)


@pytest.fixture
def items_dir(tmp_path, settings):
    settings.ITEMS_DIR = tmp_path / "items"
    return settings.ITEMS_DIR


@pytest.fixture
def no_dispatch(monkeypatch):
    """Runs stay queued: for tests that look at the API, not at crawls."""
    monkeypatch.setattr("jobs.tasks.dispatch_run.delay", lambda run_id: None)
