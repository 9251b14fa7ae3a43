"""Settings for the test suite: the real settings, with a throw-away DATA_DIR and a file-based test
database that the Celery worker and Scrapyd crawls started by integration tests share."""

import os
import tempfile

os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="platform-test-"))
os.environ.setdefault("TEST_DATABASE_PATH", os.path.join(os.environ["DATA_DIR"], "test.sqlite3"))
os.environ.setdefault("RUN_REPORT_GRACE", "5")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
