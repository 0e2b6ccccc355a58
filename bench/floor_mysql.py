"""The floors on MariaDB (or MySQL): the job lifecycle written directly with MySQLdb, no framework.

The same workloads as `bench.floor`, in the form a hand-written queue must take here. MariaDB
has no `UPDATE ... RETURNING` and refuses an UPDATE whose `IN` subquery reads the same table
with a LIMIT, so a claim is two statements in one transaction: `SELECT id ... LIMIT 1 FOR
UPDATE SKIP LOCKED`, then `UPDATE ... WHERE id = %s`, then COMMIT; the finish is a second
UPDATE in its own transaction. The batch floor claims `BATCH` rows the same way. There are no
partial indexes either, so the pending index leads with `state`.

There is no LISTEN/NOTIFY, so the pickup floor's worker polls: it claims until nothing is
runnable, then sleeps `POLL_INTERVAL`, the default `runjobs --interval`, which is also what
the framework's own pickup on MariaDB waits on. Its latency is therefore bounded by the
interval and not by the database, just as the framework's is.

`url` is a dict of `MySQLdb.connect` keyword arguments (host, port, user, passwd, database):
the name is `bench.floor`'s, so `python -m bench` can run either module the same way.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

import MySQLdb
from MySQLdb.connections import Connection

TABLE = "bench_floor"
SCHEMA = (
    f"DROP TABLE IF EXISTS {TABLE}",
    f"""
    CREATE TABLE {TABLE} (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        state VARCHAR(16) NOT NULL,
        run_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        started_at DATETIME(6) NULL,
        finished_at DATETIME(6) NULL,
        requested_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        INDEX {TABLE}_pending (state, run_at, id)
    ) ENGINE=InnoDB
    """,
)
INSERT = f"INSERT INTO {TABLE} (state) VALUES ('pending')"
BATCH = 100
PICK = f"""
SELECT id FROM {TABLE} WHERE state = 'pending' AND run_at <= NOW(6)
ORDER BY run_at, id LIMIT %s FOR UPDATE SKIP LOCKED
"""
START = f"UPDATE {TABLE} SET state = 'running', started_at = NOW(6) WHERE id IN ({{ids}})"
FINISH = f"UPDATE {TABLE} SET state = 'done', finished_at = NOW(6) WHERE id IN ({{ids}})"
FILL_CHUNK = 10_000  # rows per INSERT in fill(): few statements, each well under max_allowed_packet
POLL_INTERVAL = 1.0  # seconds: runjobs --interval's default, the framework's idle poll here


def connect(url: dict[str, Any]) -> Connection:
    """An autocommit connection in READ COMMITTED, as the framework's own connections are.

    Autocommit makes every INSERT and finish its own transaction, as in `bench.floor`; READ
    COMMITTED keeps the claim's locking read to the rows it returns, where REPEATABLE READ
    would also lock gaps of the index and make the enqueuer wait on the claimer.
    """
    connection = MySQLdb.connect(**url, autocommit=True)
    connection.cursor().execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    return connection


def reset(url: dict[str, Any]) -> None:
    with connect(url) as connection:
        cursor = connection.cursor()
        for statement in SCHEMA:
            cursor.execute(statement)


def enqueue(url: dict[str, Any], count: int) -> float:
    """Single-row inserts, each its own transaction; returns rows per second."""
    with connect(url) as connection:
        cursor = connection.cursor()
        began = time.perf_counter()
        for _ in range(count):
            cursor.execute(INSERT)
        return count / (time.perf_counter() - began)


def fill(url: dict[str, Any], count: int) -> None:
    """Queue `count` rows in a few multi-row INSERTs: the drains measure claiming, not inserting.

    executemany() sends each chunk as one INSERT with many VALUES; a recursive CTE would be a
    single statement but stops at `max_recursive_iterations` (1000 by default on MariaDB).
    """
    with connect(url) as connection:
        cursor = connection.cursor()
        for start in range(0, count, FILL_CHUNK):
            rows = min(FILL_CHUNK, count - start)
            cursor.executemany(f"INSERT INTO {TABLE} (state) VALUES (%s)", [("pending",)] * rows)


def claim(connection: Connection, limit: int) -> list[int]:
    """Claim up to `limit` runnable rows, in one transaction; returns their ids (none: empty).

    The locking SELECT skips rows another worker holds, and its locks last until the UPDATE
    has marked the rows running, so no row is claimed twice.
    """
    cursor = connection.cursor()
    cursor.execute("START TRANSACTION")
    cursor.execute(PICK, (limit,))
    ids = [id_ for (id_,) in cursor.fetchall()]
    if ids:
        cursor.execute(START.format(ids=placeholders(ids)), ids)
    connection.commit()
    return ids


def finish(connection: Connection, ids: list[int]) -> None:
    connection.cursor().execute(FINISH.format(ids=placeholders(ids)), ids)


def placeholders(ids: list[int]) -> str:
    return ", ".join(["%s"] * len(ids))


def _drain(url: dict[str, Any], limit: int) -> None:
    with connect(url) as connection:
        while ids := claim(connection, limit):
            finish(connection, ids)


def drain(url: dict[str, Any], processes: int, batch: bool = False) -> tuple[float, int]:
    """Drain the table with `processes` processes, one row or `BATCH` rows per claim;
    returns (rows per second, rows done), timed by the rows so process start-up does not
    count."""
    context = multiprocessing.get_context("spawn")
    limit = BATCH if batch else 1
    workers = [context.Process(target=_drain, args=(url, limit)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with connect(url) as connection:
        cursor = connection.cursor()
        cursor.execute(
            f"SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN(started_at), MAX(finished_at))"
            f" FROM {TABLE} WHERE state = 'done'"
        )
        done, microseconds = cursor.fetchone()
    return done / (microseconds / 1e6), done


def pickup_latency(url: dict[str, Any], count: int, spacing: float) -> list[float]:
    """An idle polling worker; `count` inserts `spacing` apart. Returns, per row, ms from just
    before its INSERT to the moment the worker's claim of it returned: the same two ends as
    `bench.floor` and the framework's W3. The worker sleeps `POLL_INTERVAL` whenever a claim
    finds nothing, as there is no NOTIFY to wake it."""
    ready = threading.Event()
    claimed: dict[int, float] = {}

    def poll() -> None:
        with connect(url) as connection:
            ready.set()
            while len(claimed) < count:
                while ids := claim(connection, 1):
                    claimed[ids[0]] = time.time()
                    finish(connection, ids)
                if len(claimed) < count:
                    time.sleep(POLL_INTERVAL)

    worker = threading.Thread(target=poll)
    worker.start()
    ready.wait()
    enqueued: dict[int, float] = {}
    with connect(url) as connection:
        cursor = connection.cursor()
        for _ in range(count):
            before = time.time()
            cursor.execute(INSERT)
            enqueued[cursor.lastrowid] = before
            time.sleep(spacing)
    worker.join()
    return sorted((claimed[id_] - before) * 1000 for id_, before in enqueued.items())
