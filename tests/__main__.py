"""The project's test command: ``python -m tests [--db ...] [pytest args...]``.

The job framework leans on database behaviour (transactions, row locking) that differs between
SQLite and PostgreSQL, so the suite runs once on each, in separate pytest processes. The
database is chosen with ``DATABASE_URL``, which ``tests.settings`` reads; everything not
understood here is passed to pytest unchanged.

PostgreSQL comes from, in order: a postgres ``DATABASE_URL`` in the environment, a server
answering on 127.0.0.1 at ``$PGPORT`` (default 5432), or a throwaway cluster started from the
installed binaries and removed afterwards.

The browser tests (marked ``e2e``) need Chromium and Playwright. Whether they can run is
decided once, before the first pass (``--browser``): by default they are skipped when either
is missing, with one line saying so at the start and in the summary, so a fresh machine gets
a green run in minutes instead of a failure at the end; CI passes ``--browser install`` so it
never passes without them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

from tests import browser, postgres_server

POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql"}
NO_POSTGRES = (
    "no PostgreSQL found: set DATABASE_URL, start a server on 127.0.0.1:5432, "
    "or install one (apt-get install postgresql)"
)
# How long each pass of the whole suite takes on a 2-core machine with the browser tests
# (measured; the README says the same). Printed as each pass starts, so nobody waits blind.
PASS_ESTIMATES = {"sqlite": "10 min", "postgresql": "15 min", "mariadb": "12 min"}
MYSQL_SCHEMES = {"mysql", "mariadb"}
# The MariaDB pass's server when DATABASE_URL names none: the local one, as root.
LOCAL_MARIADB = "mysql://root@127.0.0.1:3306/jobs"
# Which passes each --db runs; "both" (the default) is SQLite and PostgreSQL.
DB_CHOICES = {
    "sqlite": ["sqlite"],
    "postgresql": ["postgresql"],
    "mariadb": ["mariadb"],
    "both": ["sqlite", "postgresql"],
    "all": ["sqlite", "postgresql", "mariadb"],
}
BROWSER_CHOICES = {
    "auto": "run them if Chromium and Playwright are installed, else skip them and say so",
    "require": "fail before any pass if they cannot run (no silent skip)",
    "install": "install what they need first (apt-get, as root or through sudo; pip), "
    "then as require",
}
PYTEST_OUTCOMES = {
    0: "passed",
    1: "tests failed",
    2: "interrupted",
    3: "internal error",
    4: "usage error",
    5: "no tests collected",
}


@dataclasses.dataclass(frozen=True)
class Database:
    """Where one pass runs: the backend, a human description, and the URL given to Django."""

    backend: str
    origin: str
    url: str


@dataclasses.dataclass(frozen=True)
class PassResult:
    """The outcome of one pass; ``exit_code`` is pytest's, or 1 if the pass could not run."""

    backend: str
    exit_code: int
    outcome: str
    seconds: float = 0.0


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
        choices=list(DB_CHOICES),
        default="both",
        help="which database(s) to run the suite on: both is SQLite and PostgreSQL, all adds "
        "MariaDB (default: both)",
    )
    parser.add_argument(
        "--browser",
        choices=list(BROWSER_CHOICES),
        default="auto",
        help="the browser tests (marked e2e): "
        + "; ".join(f"{name}: {meaning}" for name, meaning in BROWSER_CHOICES.items())
        + " (default: auto)",
    )
    options, pytest_args = parser.parse_known_args(argv)
    if pytest_args[:1] == ["--"]:
        pytest_args = pytest_args[1:]
    return options, pytest_args


def browser_decision(choice: str) -> str | None:
    """Whether the browser tests can run: None if so, else the line saying they are skipped.

    Raises BrowserUnavailable or BrowserInstallFailed when ``choice`` will not accept a skip.
    """
    try:
        browser.check_available()
    except browser.BrowserUnavailable as unavailable:
        if choice == "auto":
            return (
                f"browser tests skipped: {unavailable.missing} ({unavailable.remedy}, then "
                "rerun; or python -m tests --browser install to install it now)"
            )
        if choice == "require":
            raise
        print(f"== {unavailable.missing}: installing it (a minute or two)", flush=True)
        browser.install()
    return None


def run_pytest(database: Database, pytest_args: list[str], skip_browser: str | None) -> PassResult:
    """Run the whole suite in a fresh interpreter, so no Django state leaks between passes.

    ``skip_browser``, the line from `browser_decision()`, reaches tests/e2e/conftest.py as
    the skip reason; None lets the browser tests run, whatever this process inherited.
    """
    estimate = f"about {PASS_ESTIMATES[database.backend]} for the whole suite on 2 cores"
    print(f"== tests on {database.backend} ({estimate}): {database.origin}", flush=True)
    env = {**os.environ, "DATABASE_URL": database.url}
    env.pop(browser.SKIP_BROWSER_TESTS, None)
    if skip_browser:
        env[browser.SKIP_BROWSER_TESTS] = skip_browser
    command = [sys.executable, "-m", "pytest", *pytest_args]
    exit_code = subprocess.run(command, env=env, check=False).returncode
    if exit_code < 0:  # killed by a signal
        return PassResult(database.backend, 1, f"killed by signal {-exit_code}")
    return PassResult(database.backend, exit_code, PYTEST_OUTCOMES.get(exit_code, "failed"))


def sqlite_pass(pytest_args: list[str], skip_browser: str | None) -> PassResult:
    """Run on a database file in a fresh temporary directory, never on a developer's db."""
    with tempfile.TemporaryDirectory(prefix="jobs-sqlite-") as directory:
        # An absolute path after "sqlite:///" gives the four slashes django-environ expects.
        url = f"sqlite:///{Path(directory) / 'jobs.sqlite3'}"
        database = Database("sqlite", f"DATABASE_URL={url}", url)
        return run_pytest(database, pytest_args, skip_browser)


def postgresql_pass(pytest_args: list[str], skip_browser: str | None) -> PassResult:
    """Run on the first PostgreSQL available; a missing server is a failed pass, not a skip."""
    try:
        with postgresql_database() as database:
            return run_pytest(database, pytest_args, skip_browser)
    except postgres_server.PostgresUnavailable as error:
        print(f"tests: {error}", file=sys.stderr, flush=True)
        return PassResult("postgresql", 1, "not run, see the message above")


def mariadb_pass(pytest_args: list[str], skip_browser: str | None) -> PassResult:
    """Run on a mysql:// DATABASE_URL, else on the local MariaDB as root; Django's test
    runner makes (and drops) its own test database there."""
    env_url = os.environ.get("DATABASE_URL", "")
    url = env_url if urlsplit(env_url).scheme in MYSQL_SCHEMES else LOCAL_MARIADB
    origin = f"DATABASE_URL={redact(url)}" if url == env_url else f"local server, {url}"
    return run_pytest(Database("mariadb", origin, url), pytest_args, skip_browser)


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


def print_summary(results: list[PassResult], skip_browser: str | None) -> None:
    """One line per pass, so the outcome is readable without scrolling through pytest output."""
    total = duration(sum(result.seconds for result in results))
    print(f"== summary ({total})", flush=True)
    for result in results:
        outcome = f"exit {result.exit_code} ({result.outcome})"
        print(f"   {result.backend:<10} {outcome:<24} {duration(result.seconds)}", flush=True)
    if skip_browser:
        print(f"   {skip_browser}", flush=True)


def duration(seconds: float) -> str:
    """``"42s"`` or ``"3m05s"``: what a person reads in a summary."""
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM (e.g. a cancelled CI job) into SystemExit so cleanup code still runs."""
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    """Run the selected passes; 0 only if every one of them exited 0."""
    options, pytest_args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    by_name = {"sqlite": sqlite_pass, "postgresql": postgresql_pass, "mariadb": mariadb_pass}
    passes = [by_name[name] for name in DB_CHOICES[options.db]]
    results: list[PassResult] = []
    try:
        try:
            skip_browser = browser_decision(options.browser)
        except (browser.BrowserUnavailable, browser.BrowserInstallFailed) as error:
            instead = " (or rerun with --browser install)" if options.browser == "require" else ""
            print(f"tests: --browser {options.browser}: {error}{instead}", file=sys.stderr)
            return 1
        if skip_browser:
            print(f"== {skip_browser}", flush=True)
        for run_pass in passes:
            started = time.monotonic()
            result = run_pass(pytest_args, skip_browser)
            results.append(dataclasses.replace(result, seconds=time.monotonic() - started))
    except KeyboardInterrupt:
        print("\ntests: interrupted", file=sys.stderr)
        return 130
    print_summary(results, skip_browser)
    return next((result.exit_code for result in results if result.exit_code != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
