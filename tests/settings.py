"""Test settings: the project's, plus a job app made for tests (counting side effects)."""

from project.settings import *  # noqa: F403
from project.settings import DATABASES, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]

# Fast password hashing: the admin tests create users, they do not test hashing.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
PROVIDER_BOOT_SECONDS = 0.0

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not Django's shared in-memory database, so other threads and processes see
    # the same database with the same locking as production.
    DATABASES["default"]["TEST"] = {"NAME": f"{DATABASES['default']['NAME']}.test"}

# No clock and no latency probes unless a test asks for them (override_settings, or
# tests.settings_clock for worker processes): a tick would enqueue jobs into tests that count.
JOBS_SCHEDULE: dict = {}
JOBS_QUEUES: dict = {}
