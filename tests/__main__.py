"""The project's test command: ``python -m tests [--db ...] [pytest args...]``.

The job framework leans on database behaviour (transactions, row locking) that differs between
SQLite and PostgreSQL, so the suite runs once on each, in separate pytest processes. The
database is chosen with ``DATABASE_URL``, which ``tests.settings`` reads; everything not
understood here is passed to pytest unchanged.

PostgreSQL comes from, in order: a postgres ``DATABASE_URL`` in the environment, a server
answering on 127.0.0.1 at ``$PGPORT`` (default 5432), or a throwaway cluster started from the
installed binaries and removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

from tests import postgres_server

POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql"}
NO_POSTGRES = (
    "no PostgreSQL found: set DATABASE_URL, start a server on 127.0.0.1:5432, "
    "or install one (apt-get install postgresql)"
)
PYTEST_OUTCOMES = {
    0: "passed",
    1: "tests failed",
    2: "interrupted",
    3: "internal error",
    4: "usage error",
    5: "no tests collected",
}


@dataclass(frozen=True)
class Database:
    """Where one pass runs: the backend, a human description, and the URL given to Django."""

    backend: str
    origin: str
    url: str


@dataclass(frozen=True)
class PassResult:
    """The outcome of one pass; ``exit_code`` is pytest's, or 1 if the pass could not run."""

    backend: str
    exit_code: int
    outcome: str


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split our own options from pytest's (everything unknown, and all after a leading --)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests",
        description="Run the pytest suite on SQLite and on PostgreSQL.",
        epilog="Other arguments go to pytest; use `python -m tests -- --help` for pytest's help.",
        allow_abbrev=False,  # so pytest options such as --durations never match ours
    )
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgresql", "both"],
        default="both",
        help="which database(s) to run the suite on (default: both)",
    )
    options, pytest_args = parser.parse_known_args(argv)
    if pytest_args[:1] == ["--"]:
        pytest_args = pytest_args[1:]
    return options, pytest_args


def run_pytest(database: Database, pytest_args: list[str]) -> PassResult:
    """Run the whole suite in a fresh interpreter, so no Django state leaks between passes."""
    print(f"== tests on {database.backend} ({database.origin})", flush=True)
    env = {**os.environ, "DATABASE_URL": database.url}
    command = [sys.executable, "-m", "pytest", *pytest_args]
    exit_code = subprocess.run(command, env=env, check=False).returncode
    if exit_code < 0:  # killed by a signal
        return PassResult(database.backend, 1, f"killed by signal {-exit_code}")
    return PassResult(database.backend, exit_code, PYTEST_OUTCOMES.get(exit_code, "failed"))


def sqlite_pass(pytest_args: list[str]) -> PassResult:
    """Run on a database file in a fresh temporary directory, never on a developer's db."""
    with tempfile.TemporaryDirectory(prefix="jobs-sqlite-") as directory:
        # An absolute path after "sqlite:///" gives the four slashes django-environ expects.
        url = f"sqlite:///{Path(directory) / 'jobs.sqlite3'}"
        return run_pytest(Database("sqlite", f"DATABASE_URL={url}", url), pytest_args)


def postgresql_pass(pytest_args: list[str]) -> PassResult:
    """Run on the first PostgreSQL available; a missing server is a failed pass, not a skip."""
    try:
        with postgresql_database() as database:
            return run_pytest(database, pytest_args)
    except postgres_server.PostgresUnavailable as error:
        print(f"tests: {error}", file=sys.stderr, flush=True)
        return PassResult("postgresql", 1, "not run, see the message above")


@contextlib.contextmanager
def postgresql_database() -> Iterator[Database]:
    """Yield the PostgreSQL database to test on, starting (and then stopping) one if needed."""
    env_url = os.environ.get("DATABASE_URL", "")
    if urlsplit(env_url).scheme in POSTGRES_SCHEMES:
        yield Database("postgresql", f"DATABASE_URL={redact(env_url)}", env_url)
        return

    port = int(os.environ.get("PGPORT") or 5432)
    url = postgres_server.local_server_url(port)
    if url:
        yield Database("postgresql", f"local server at 127.0.0.1:{port}, {url}", url)
        return

    binaries = postgres_server.find_binaries()
    if binaries is None:
        raise postgres_server.PostgresUnavailable(NO_POSTGRES)
    print(f"== no PostgreSQL server on 127.0.0.1:{port}: starting a throwaway one", flush=True)
    with postgres_server.throwaway_cluster(binaries) as cluster:
        owner = f", run as {cluster.owner}" if cluster.owner else ""
        origin = f"throwaway cluster in {cluster.workdir}{owner}, {cluster.url}"
        yield Database("postgresql", origin, cluster.url)


def redact(url: str) -> str:
    """The URL without its password, fit for CI logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def print_summary(results: list[PassResult]) -> None:
    """One line per pass, so the outcome is readable without scrolling through pytest output."""
    print("== summary", flush=True)
    for result in results:
        print(f"   {result.backend:<10} exit {result.exit_code} ({result.outcome})", flush=True)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM (e.g. a cancelled CI job) into SystemExit so cleanup code still runs."""
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    """Run the selected passes; 0 only if every one of them exited 0."""
    options, pytest_args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    results: list[PassResult] = []
    try:
        if options.db in ("sqlite", "both"):
            results.append(sqlite_pass(pytest_args))
        if options.db in ("postgresql", "both"):
            results.append(postgresql_pass(pytest_args))
    except KeyboardInterrupt:
        print("\ntests: interrupted", file=sys.stderr)
        return 130
    print_summary(results)
    return next((result.exit_code for result in results if result.exit_code != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
