"""The floors: the job lifecycle written directly with psycopg, no framework at all.

Insert a row; claim it with `UPDATE ... (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)`; mark
it done. One row per claim and one statement per step, each its own transaction, as a
hand-written queue would do it. The batch floor claims `BATCH` rows per UPDATE and marks
them done with one UPDATE: what PostgreSQL itself allows when nothing is paid per row. Both
are measured in the same run as the framework so the figures read as ratios.
"""

from __future__ import annotations

import multiprocessing
import threading
import time

import psycopg

TABLE = "bench_floor"
CHANNEL = "bench_floor"
SCHEMA = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    id bigserial PRIMARY KEY,
    state text NOT NULL,
    run_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    requested_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX {TABLE}_pending ON {TABLE} (run_at, id) WHERE state = 'pending';
"""
INSERT = f"INSERT INTO {TABLE} (state) VALUES ('pending') RETURNING id"
CLAIM = f"""
UPDATE {TABLE} SET state = 'running', started_at = clock_timestamp()
WHERE id = (SELECT id FROM {TABLE} WHERE state = 'pending' AND run_at <= now()
            ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id
"""
FINISH = f"UPDATE {TABLE} SET state = 'done', finished_at = clock_timestamp() WHERE id = %s"
BATCH = 100
CLAIM_BATCH = f"""
UPDATE {TABLE} SET state = 'running', started_at = clock_timestamp()
WHERE id IN (SELECT id FROM {TABLE} WHERE state = 'pending' AND run_at <= now()
             ORDER BY run_at, id LIMIT {BATCH} FOR UPDATE SKIP LOCKED)
RETURNING id
"""
FINISH_BATCH = (
    f"UPDATE {TABLE} SET state = 'done', finished_at = clock_timestamp() WHERE id = ANY(%s)"
)


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def reset(url: str) -> None:
    with connect(url) as connection:
        connection.execute(SCHEMA)


def enqueue(url: str, count: int) -> float:
    """Single-row inserts, each its own transaction; returns rows per second."""
    with connect(url) as connection:
        began = time.perf_counter()
        for _ in range(count):
            connection.execute(INSERT)
        return count / (time.perf_counter() - began)


def fill(url: str, count: int) -> None:
    """Queue `count` rows in one statement: the drains measure claiming, not inserting."""
    with connect(url) as connection:
        connection.execute(
            f"INSERT INTO {TABLE} (state) SELECT 'pending' FROM generate_series(1, %s)", (count,)
        )


def _drain_one(url: str) -> None:
    with connect(url) as connection:
        while (row := connection.execute(CLAIM).fetchone()) is not None:
            connection.execute(FINISH, row)


def _drain_batches(url: str) -> None:
    with connect(url) as connection:
        while ids := [id_ for (id_,) in connection.execute(CLAIM_BATCH).fetchall()]:
            connection.execute(FINISH_BATCH, (ids,))


def drain(url: str, processes: int, batch: bool = False) -> tuple[float, int]:
    """Drain the table with `processes` processes, one row or `BATCH` rows per claim;
    returns (rows per second, rows done)."""
    context = multiprocessing.get_context("spawn")
    target = _drain_batches if batch else _drain_one
    workers = [context.Process(target=target, args=(url,)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with connect(url) as connection:
        done, seconds = connection.execute(
            f"SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at))"
            f" FROM {TABLE} WHERE state = 'done'"
        ).fetchone()
    return done / float(seconds), done


def pickup_latency(url: str, count: int, spacing: float) -> list[float]:
    """An idle LISTENing worker; `count` inserts+NOTIFY `spacing` apart. Returns, per row, ms
    from just before its INSERT to the moment the listener's claim of it returned: the same
    two ends as the framework's W3 (before the enqueue call, the job's first line)."""
    ready = threading.Event()
    claimed: dict[int, float] = {}

    def listen() -> None:
        with connect(url) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            ready.set()
            while len(claimed) < count:
                # Drained into a list first: the generator holds the connection's lock.
                list(connection.notifies(timeout=1.0, stop_after=1))
                while (row := connection.execute(CLAIM).fetchone()) is not None:
                    claimed[row[0]] = time.time()
                    connection.execute(FINISH, row)

    listener = threading.Thread(target=listen)
    listener.start()
    ready.wait()
    enqueued: dict[int, float] = {}
    with connect(url) as connection:
        for _ in range(count):
            before = time.time()
            with connection.transaction():
                (id_,) = connection.execute(INSERT).fetchone()
                connection.execute(f"NOTIFY {CHANNEL}")
            enqueued[id_] = before
            time.sleep(spacing)
    listener.join()
    return sorted((claimed[id_] - before) * 1000 for id_, before in enqueued.items())
