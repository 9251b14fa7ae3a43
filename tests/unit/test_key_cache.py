"""API keys found are remembered per process (core.models.ApiKey.lookup) until a key or user changes."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from core import models
from core.keys import revoke_key
from core.models import ApiKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def issued(user):
    models.forget_keys()
    key, raw = ApiKey.issue(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return key, raw, client


def test_a_key_found_once_is_not_looked_up_again(issued):
    key, raw, _client = issued
    assert ApiKey.lookup(raw) == key
    with CaptureQueriesContext(connection) as queries:
        assert ApiKey.lookup(raw) == key
    assert len(queries) == 0


def test_an_unknown_key_is_looked_up_every_time(issued):
    assert ApiKey.lookup("sk_unknown") is None
    with CaptureQueriesContext(connection) as queries:
        assert ApiKey.lookup("sk_unknown") is None
    assert len(queries) == 1


def test_a_revoked_key_fails_at_once(issued, django_capture_on_commit_callbacks):
    key, _raw, client = issued
    assert client.get("/api/v1/jobs").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        revoke_key(key=key)
    assert client.get("/api/v1/jobs").status_code == 401


def test_another_process_revoking_a_key_is_seen_from_the_next_request(issued):
    key, raw, client = issued
    assert client.get("/api/v1/jobs").status_code == 200
    # Another web process revokes it: the row and the shared generation change, this process's memory does not.
    ApiKey.objects.filter(pk=key.pk).update(revoked_at="2026-01-01T00:00:00Z")
    assert client.get("/api/v1/jobs").status_code == 200  # (what a remembered key alone would give)
    cache.set(models.found_keys.generation_key, "another process's", timeout=None)
    assert client.get("/api/v1/jobs").status_code == 401


@pytest.mark.parametrize("change", ["deactivate", "delete_key"])
def test_a_deactivated_user_or_deleted_key_fails_at_once(issued, user, change):
    key, _raw, client = issued
    assert client.get("/api/v1/jobs").status_code == 200
    if change == "deactivate":
        user.is_active = False
        user.save()
    else:
        key.delete()
    assert client.get("/api/v1/jobs").status_code == 401


def test_a_cache_without_the_generation_looks_keys_up_again(issued):
    _key, raw, _client = issued
    ApiKey.lookup(raw)
    cache.delete(models.found_keys.generation_key)  # evicted, or a cache restarted empty
    with CaptureQueriesContext(connection) as queries:
        ApiKey.lookup(raw)
    assert len(queries) == 1


def test_no_memory_with_a_ttl_of_zero(issued, settings):
    settings.LOOKUP_CACHE_TTL = 0
    _key, raw, _client = issued
    ApiKey.lookup(raw)
    with CaptureQueriesContext(connection) as queries:
        ApiKey.lookup(raw)
    assert len(queries) == 1


@pytest.mark.parametrize(("generated", "engine", "storage", "warned"), [
    (True, "django.db.backends.postgresql", "", True),
    (True, "django.db.backends.sqlite3", "s3://bucket/p", True),
    (True, "django.db.backends.sqlite3", "", False),  # one machine: its own key is fine
    (False, "django.db.backends.postgresql", "s3://bucket/p", False),
])
def test_a_generated_secret_key_is_warned_of_where_machines_share_a_database(settings, generated, engine, storage, warned):
    from core.checks import secret_key_shared

    settings.SECRET_KEY_GENERATED = generated
    settings.DATABASES = {"default": {**settings.DATABASES["default"], "ENGINE": engine}}
    settings.STORAGE_URL = storage
    assert [m.id for m in secret_key_shared(None)] == (["platform.W001"] if warned else [])
