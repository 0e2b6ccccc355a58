"""Settings for the example project, read from the environment (twelve-factor style).

Every value has a development default so a fresh checkout runs with no configuration and
no database server: `DATABASE_URL` unset means a SQLite file next to manage.py.
"""

from pathlib import Path

import django
import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

SUPPORTED_DATABASE_SCHEMES = {"postgres", "postgresql", "pgsql", "sqlite", "mysql", "mariadb"}


def database_from_url(url: str) -> dict:
    """Parse DATABASE_URL, refusing what django-environ would silently half-accept."""
    scheme = url.partition("://")[0]
    if "://" not in url or scheme not in SUPPORTED_DATABASE_SCHEMES:
        raise ImproperlyConfigured(
            f"DATABASE_URL {url!r} is not a database URL this project supports; use "
            "postgres://USER@HOST:PORT/NAME, mysql://USER@HOST:PORT/NAME or sqlite:////absolute/path.sqlite3"
        )
    if scheme == "mariadb":  # django-environ knows MariaDB by MySQL's name
        url = "mysql" + url[len(scheme) :]
    try:
        config = env.db_url_config(url)
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL {url!r} is malformed: {exc}") from exc
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"DATABASE_URL {url!r} names no database")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # IMMEDIATE takes the write lock when a transaction starts, so two writers queue on
        # the busy timeout instead of one failing with "database is locked" when it upgrades
        # a read to a write; WAL lets readers (the admin) run while a worker writes.
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    elif config["ENGINE"] == "django.db.backends.mysql":
        config["CONN_HEALTH_CHECKS"] = True
        # utf8mb4: every character a text field takes (MySQL's "utf8" is 3 bytes at most);
        # READ COMMITTED (Django's default, said here so it is seen): a claim's SKIP LOCKED
        # and a fenced UPDATE read the latest committed row, not a snapshot, and take no
        # gap locks that would block other workers' inserts.
        config["OPTIONS"] = {"charset": "utf8mb4", "isolation_level": "read committed"}
        # Django's MySQL backend, with the schema editor that gives job tables their partial
        # indexes and unique constraints (docs/databases.md).
        config["ENGINE"] = "jobs.db.mysql"
    else:
        config["CONN_HEALTH_CHECKS"] = True
        # Lets the workers' claim and finish statements be parsed and planned once per
        # connection instead of every time (Django leaves this off for transaction-mode
        # poolers; set it to None behind one that does not keep prepared statements).
        config.setdefault("OPTIONS", {}).update(prepare_threshold=5, server_side_binding=True)
        # Django's connection pool (psycopg_pool), when DATABASE_POOL_SIZE says how large:
        # each runjobs process needs --threads + 3 of it (docs/running-workers.md).
        if pool_size := env.str("DATABASE_POOL_SIZE", default="").strip():
            if not pool_size.isdigit() or int(pool_size) < 1:
                raise ImproperlyConfigured(
                    f"DATABASE_POOL_SIZE {pool_size!r} is not a number of connections (1 or more)"
                )
            pool = {"min_size": 2, "max_size": int(pool_size), "timeout": 10}
            config["OPTIONS"]["pool"] = pool
    return config


SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-development-only-key-change-me")
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

DATABASES = {
    "default": database_from_url(
        env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    # Before the admin, so that its admin/index.html (the admin's own, plus a link to the
    # jobs dashboard) is the one the admin index renders.
    "jobs",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Django's Tasks API: built in from Django 6.0, the django-tasks backport's app on 5.2.
    *(["django_tasks"] if django.VERSION < (6, 0) else []),
    "jobs.contrib.tasks",  # the Tasks API backend's table (the example's check_reachable)
    "project.instances",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "jobs": {"handlers": ["console"], "level": env.str("JOBS_LOG_LEVEL", default="INFO")},
    },
}

# Behind PgBouncer (or another pooler) in transaction mode, DATABASE_URL names the pooler and
# DATABASE_TRANSACTION_POOLING=1 says so: no prepared statements (PgBouncer keeps none before
# 1.21), no server-side cursors, no session state from the workers; they LISTEN through
# DATABASE_DIRECT_URL, a direct connection to the same database, or poll without one
# (docs/databases.md).
JOBS_TRANSACTION_POOLING = env.bool("DATABASE_TRANSACTION_POOLING", default=False)
if JOBS_TRANSACTION_POOLING:
    DATABASES["default"]["OPTIONS"].update(prepare_threshold=None, server_side_binding=False)
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    if direct_url := env.str("DATABASE_DIRECT_URL", default=""):
        DATABASES["direct"] = database_from_url(direct_url)
    JOBS_LISTEN = "direct" if direct_url else False

# Seconds a running job's claim lasts without renewal before other workers rescue it.
JOBS_LEASE_SECONDS = env.float("JOBS_LEASE_SECONDS", default=60)

# Seconds a worker's database connection may stay silent (a cut network) before it is an
# outage the worker reports and waits out.
JOBS_NETWORK_TIMEOUT = env.float("JOBS_NETWORK_TIMEOUT", default=10)

# What each queue promises (docs/monitoring.md): a provision should start within 10 minutes
# of its request, and a latency probe every minute measures the queue's live latency.
# /jobs/health/ and `manage.py jobs health` report a queue that breaks this.
JOBS_QUEUES = {"average_slow": {"sla": "10m", "probe": True}}

# Django's Tasks API (the django-tasks package on Django 5.2): `@task` functions become
# jobs_tasks.TaskJob rows, run by runjobs like any job.
TASKS = {"default": {"BACKEND": "jobs.contrib.tasks.backend.DatabaseBackend"}}

# How long the simulated cloud provider of the example domain takes to boot a server.
PROVIDER_BOOT_SECONDS = env.float("PROVIDER_BOOT_SECONDS", default=0.2)
