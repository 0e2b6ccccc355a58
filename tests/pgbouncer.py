"""A PgBouncer in transaction mode in front of the test database, for the tests that run
workers through one (Debian's `pgbouncer` package; `.ci/run` installs it).

Each use starts its own on a free port of 127.0.0.1, from a configuration written to a
temporary folder, and stops it afterwards. PgBouncer refuses to run as root, so as root it is
started as the `postgres` user (`-u`), which then owns that folder.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
# What a test needs of it: every worker thread of a few processes, and the test itself.
POOL_SIZE = 60


def available() -> bool:
    return Path(PGBOUNCER).is_file()


def needs_pgbouncer() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not available(), reason="needs PgBouncer (apt-get install pgbouncer)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def pgbouncer(database_url: str) -> Iterator[str]:
    """Start a PgBouncer in transaction mode in front of `database_url`'s server; yields the
    same URL through it (the same user and database name, PgBouncer's port)."""
    parts = urlsplit(database_url)
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="jobs-pgbouncer-"))
    user = parts.username or "postgres"
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={parts.hostname or '127.0.0.1'} port={parts.port or 5432}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {folder / 'userlist.txt'}",
                "pool_mode = transaction",
                "max_client_conn = 1000",
                f"default_pool_size = {POOL_SIZE}",
                "ignore_startup_parameters = extra_float_digits,options",
                "server_reset_query =",
                # After a failed login to the server (restarting), try again in a second,
                # not PgBouncer's default 15 s, for which every client waits.
                "server_login_retry = 1",
                # Its log keeps what went wrong (failed logins, closed server connections),
                # not a line per client, so its tail explains a failed test.
                "log_connections = 0",
                "log_disconnections = 0",
                f"logfile = {folder / 'pgbouncer.log'}",
                f"pidfile = {folder / 'pgbouncer.pid'}",
                "",
            ]
        )
    )
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
        for path in folder.iterdir():
            os.chown(path, account.pw_uid, account.pw_gid)
        command[1:1] = ["-u", "postgres"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(port, process, folder)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
        yield urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    finally:
        _show_log_tail(folder / "pgbouncer.log")
        process.send_signal(signal.SIGINT)  # PgBouncer's "shut down now"
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _show_log_tail(log: Path, lines: int = 40) -> None:
    """Print the end of PgBouncer's log to stderr, which pytest shows only for a failed test:
    the logins it failed, the server connections it closed, the clients it refused."""
    if log.exists():
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        sys.stderr.write("PgBouncer's log, last lines:\n" + "\n".join(tail) + "\n")


def _wait_for(port: int, process: subprocess.Popen, folder: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = folder / "pgbouncer.log"
            said = process.stderr.read().decode() + (log.read_text() if log.exists() else "")
            raise RuntimeError(f"PgBouncer exited at start: {said}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"PgBouncer did not listen on 127.0.0.1:{port} within 10 s")
