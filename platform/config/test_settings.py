"""Settings for the test suite: the real settings, with a throw-away DATA_DIR and a file-based test
database that the Celery worker and Scrapyd crawls started by integration tests share."""

import os
import tempfile

os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="platform-test-"))
# Under pytest-xdist every worker inherits the controller's environment: each takes a folder of its own
# (its test database, file cache, broker folder and items; the workers and crawls it starts inherit it).
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _XDIST_WORKER and os.path.basename(os.environ["DATA_DIR"]) != _XDIST_WORKER:
    os.environ["DATA_DIR"] = os.path.join(os.environ["DATA_DIR"], _XDIST_WORKER)
    os.makedirs(os.environ["DATA_DIR"], exist_ok=True)
    for _name in ("TEST_DATABASE_PATH", "PLATFORM_ENV_FILE"):
        if os.environ.get(_name, "").startswith(os.path.dirname(os.environ["DATA_DIR"]) + os.sep):
            del os.environ[_name]  # the controller's default, under its folder: this worker's instead
os.environ.setdefault("TEST_DATABASE_PATH", os.path.join(os.environ["DATA_DIR"], "test.sqlite3"))
# Platforms that tests start record their settings here, not over a developer's ./.platform.env.
os.environ.setdefault("PLATFORM_ENV_FILE", os.path.join(os.environ["DATA_DIR"], "platform.env"))
os.environ.setdefault("RUN_REPORT_GRACE", "5")
# Fixture sites and proxies listen on loopback (crawls started by tests inherit this as well); tests
# of refusals override CRAWL_ALLOWED_NETWORKS to an empty allow-list.
os.environ.setdefault("CRAWL_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
# Unit tests never touch the network, DNS included (tests of the check turn it on with a stub resolver).
os.environ.setdefault("CRAWL_RESOLVE_SOURCES", "0")
# Tests deploy from git repositories they make on disk (the worker started by integration tests inherits this).
os.environ.setdefault("GIT_ALLOW_LOCAL", "1")

# Alert deliveries are retried within a second or two in tests (the worker inherits this too).
os.environ.setdefault("ALERTS_RETRY_BACKOFF", "0.5")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests roll their nodes back and make them again with the same ids: nothing kept between them
# (tests/unit/test_health_nodes.py checks the keeping itself).
HEALTH_NODES_TTL = 0.0
