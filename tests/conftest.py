"""Shared fixtures: which database we are on, and running manage.py as a real process."""

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection, transaction

from jobs import timesource

pytest_plugins = ["jobs.testing.pytest_plugin"]

REPO = Path(__file__).resolve().parent.parent
NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def needs_postgresql(why: str) -> pytest.MarkDecorator:
    """Skip elsewhere, saying what of PostgreSQL the test needs."""
    return pytest.mark.skipif(connection.vendor != "postgresql", reason=f"needs PostgreSQL ({why})")


# Row locks that other sessions wait on or skip: PostgreSQL's and MariaDB's, not SQLite's
# single writer.
row_locks = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="needs row locks across sessions (not SQLite)"
)
listen_notify = needs_postgresql("LISTEN/NOTIFY wake-ups")


@pytest.fixture(autouse=True)
def _host_clock_again():
    """Each test starts on the host's clock: a worker in an earlier test may have read the
    database's (`timesource.synchronise`), which would outlive it in this process."""
    yield
    timesource.forget()


@pytest.fixture
def frozen(monkeypatch):
    """Pin the framework's clock at NOON; tests move it by assigning `frozen.now`."""

    class Clock:
        now = NOON

    monkeypatch.setattr(timesource, "now", lambda: Clock.now)
    return Clock


@contextlib.contextmanager
def row_held(rows):
    """The rows of queryset `rows` locked (`SELECT ... FOR UPDATE`) by another session, on a
    thread of its own, until the block ends."""
    holding, release = threading.Event(), threading.Event()

    def hold_lock():
        with transaction.atomic():
            list(rows.select_for_update())
            holding.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=hold_lock)
    thread.start()
    holding.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join()


def in_thread(worker) -> threading.Thread:
    """Run `worker` on a thread that closes its own database connection when done."""

    def serve():
        try:
            worker.run()
        finally:
            connection.close()

    thread = threading.Thread(target=serve)
    thread.start()
    return thread


def wait_for(predicate, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        time.sleep(0.05)


def database_url() -> str:
    """A DATABASE_URL for the database the tests are using right now (the test database)."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
    host = settings["HOST"] or "localhost"
    port = f":{settings['PORT']}" if settings["PORT"] else ""
    scheme = "mysql" if connection.vendor == "mysql" else "postgres"
    return f"{scheme}://{settings['USER']}{password}@{host}{port}/{settings['NAME']}"


def manage_env(**overrides: str) -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()}
    env.update(overrides)
    return env


def manage(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run `python manage.py ARGS` as a separate process against the test database."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=manage_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# For tests whose subject runs on a database of its own, whatever the suite's (the benchmark
# on its own SQLite file): once, in the SQLite pass, not again in every other pass.
once = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="on its own database whatever the suite's: once"
)


def run_bench(tmp_path: Path, module: str, *args: str) -> dict:
    """Run `python -m MODULE ARGS` on a throwaway SQLite database; its closing BENCH_JSON."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bench.sqlite3'}",
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("BENCH_JSON "), result.stdout
    return json.loads(last.removeprefix("BENCH_JSON "))


_started: list[subprocess.Popen] = []


def start_manage(*args: str, **env: str) -> subprocess.Popen:
    """Start `python manage.py ARGS` against the test database; it is killed when the test
    ends if it is still running then."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=manage_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _started.append(process)
    return process


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    """A worker that a failing test did not stop would go on claiming the next tests' jobs on
    the same database, and they would fail for it; this one fails alone, and says so."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()
            print(f"killed {process.args[2:]}: still running when its test ended", file=sys.stderr)
