"""Find or start a PostgreSQL server for the test run (used by ``python -m tests``).

The PostgreSQL pass must work on a developer machine with a server already running, in CI
where only the packaged binaries may be installed, and as root (which ``initdb`` refuses).
This module holds that plumbing so ``tests/__main__.py`` stays about *which* database to use.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL server could be found or started."""


@dataclass(frozen=True)
class Binaries:
    """The two server programs needed to run a private cluster."""

    initdb: Path
    pg_ctl: Path


@dataclass(frozen=True)
class Cluster:
    """A running throwaway cluster, as handed to the test pass."""

    url: str
    port: int
    workdir: Path
    owner: str | None  # the OS user running the server, None when it is the current user


def can_connect(port: int, user: str) -> bool:
    """Whether ``user`` can log into database ``postgres`` on HOST:port (no password prompt)."""
    try:
        with psycopg.connect(host=HOST, port=port, user=user, dbname="postgres", connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def local_server_url(port: int) -> str | None:
    """URL of a server already answering on HOST:port, or None.

    Tries the conventional superuser ``postgres`` first, then the current OS user (the
    default role of e.g. Homebrew installs). The URL names database ``jobs``, which need not
    exist: pytest-django creates ``test_jobs`` through the ``postgres`` maintenance database.
    """
    for user in _candidate_users():
        if can_connect(port, user):
            return f"postgres://{user}@{HOST}:{port}/jobs"
    return None


def _candidate_users() -> list[str]:
    users = ["postgres"]
    with contextlib.suppress(Exception):  # getuser() fails without a passwd entry or env vars
        users.append(getpass.getuser())
    return list(dict.fromkeys(users))


def find_binaries() -> Binaries | None:
    """Locate ``initdb`` and ``pg_ctl``: on PATH first, else the newest Debian-style install.

    Debian/Ubuntu packages keep them out of PATH, under ``/usr/lib/postgresql/<version>/bin``.
    """
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Binaries(Path(initdb), Path(pg_ctl))
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True):
        initdb_path, pg_ctl_path = bindir / "initdb", bindir / "pg_ctl"
        if os.access(initdb_path, os.X_OK) and os.access(pg_ctl_path, os.X_OK):
            return Binaries(initdb_path, pg_ctl_path)
    return None


def _version(bindir: Path) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin``: "15" -> (15,), "9.6" -> (9, 6)."""
    try:
        return tuple(int(part) for part in bindir.parent.name.split("."))
    except ValueError:
        return ()


@contextlib.contextmanager
def throwaway_cluster(binaries: Binaries) -> Iterator[Cluster]:
    """Create, start and always tear down a private cluster in a temporary directory.

    The cluster trusts every local connection, listens only on HOST at a free port and keeps
    its unix socket in its own directory, so it cannot clash with a system server. Stopping
    and removal happen even when the tests fail or are interrupted.
    """
    owner = _unprivileged_user() if os.geteuid() == 0 else None
    workdir = Path(tempfile.mkdtemp(prefix="jobs-pg-"))
    datadir, logfile = workdir / "data", workdir / "server.log"
    start_attempted = False
    try:
        if owner:
            shutil.chown(workdir, user=owner)
        initdb = [binaries.initdb, "-D", datadir, "--auth=trust", "-U", "postgres"]
        _run(owner, workdir, [*initdb, "--encoding=UTF8", "--locale=C", "--no-sync"])
        port = _free_port()
        _write_test_config(datadir, port, socket_dir=workdir)
        start_attempted = True
        pg_ctl = [binaries.pg_ctl, "-D", datadir, "-l", logfile]
        _run(owner, workdir, [*pg_ctl, "-w", "-t", str(START_TIMEOUT_SECONDS), "start"], logfile)
        _wait_until_accepting(port, logfile)
        yield Cluster(f"postgres://postgres@{HOST}:{port}/jobs", port, workdir, owner)
    finally:
        with _ctrl_c_ignored():
            if start_attempted:
                _stop(owner, workdir, binaries.pg_ctl, datadir)
            shutil.rmtree(workdir, ignore_errors=True)


def _unprivileged_user() -> str:
    """The account to run the server as when we are root (initdb refuses to run as root)."""
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        return "nobody"


def _as_user(owner: str | None, command: Sequence[str | Path]) -> list[str]:
    """``command`` wrapped to run as ``owner`` (None: as ourselves)."""
    args = [str(arg) for arg in command]
    if owner is None:
        return args
    if shutil.which("runuser"):
        return ["runuser", "-u", owner, "--", *args]
    return ["su", "-s", "/bin/sh", owner, "-c", shlex.join(args)]  # nologin users need -s


def _run(
    owner: str | None, workdir: Path, command: Sequence[str | Path], logfile: Path | None = None
) -> None:
    """Run a server tool quietly; on failure raise with its output (and the server log).

    ``cwd`` is the work dir because the server user may not be allowed into ours.
    """
    result = subprocess.run(
        _as_user(owner, command),
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        name = Path(command[0]).name
        details = (result.stdout + result.stderr).strip()
        if logfile is not None:
            details += "\n" + _tail(logfile)
        raise PostgresUnavailable(
            f"throwaway PostgreSQL: {name} failed (exit {result.returncode})\n{details}"
        )


def _free_port() -> int:
    """A TCP port on HOST that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _write_test_config(datadir: Path, port: int, socket_dir: Path) -> None:
    """Listen only on HOST:port; trade durability for speed, the data is thrown away."""
    settings = {
        "listen_addresses": f"'{HOST}'",
        "port": str(port),
        "unix_socket_directories": f"'{socket_dir}'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    with (datadir / "postgresql.conf").open("a", encoding="utf-8") as config:
        config.write("\n# added by tests/postgres_server.py\n")
        config.writelines(f"{name} = {value}\n" for name, value in settings.items())


def _wait_until_accepting(port: int, logfile: Path) -> None:
    """Block until the new server accepts logins; ``pg_ctl -w`` only reports it started."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not can_connect(port, "postgres"):
        if time.monotonic() > deadline:
            raise PostgresUnavailable(
                f"throwaway PostgreSQL on {HOST}:{port} did not accept connections within "
                f"{START_TIMEOUT_SECONDS}s\n{_tail(logfile)}"
            )
        time.sleep(0.2)


def _stop(owner: str | None, workdir: Path, pg_ctl: Path, datadir: Path) -> None:
    """Stop the server, escalating to an immediate shutdown if a fast one does not work."""
    for mode in ("fast", "immediate"):
        if not (datadir / "postmaster.pid").exists():
            return
        subprocess.run(
            _as_user(owner, [pg_ctl, "-D", datadir, "-m", mode, "-w", "stop"]),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )


@contextlib.contextmanager
def _ctrl_c_ignored() -> Iterator[None]:
    """Let cleanup finish under a second Ctrl-C.

    Child processes inherit the ignored SIGINT, so ``pg_ctl stop`` is shielded too.
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _tail(logfile: Path, lines: int = 20) -> str:
    """The end of the server log, to explain a failed start (the file goes with the cluster)."""
    try:
        text = logfile.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no server log at {logfile})"
    return "server log (end):\n" + "\n".join(text.splitlines()[-lines:])
