"""The floor: the job lifecycle written directly with psycopg, no framework at all.

Insert a row; claim it with `UPDATE ... (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)`; mark
it done. One row per claim and one statement per step, each its own transaction, as a
hand-written queue would do it. What PostgreSQL itself allows on this machine, measured in
the same run as the framework so the two read as a ratio.
"""

from __future__ import annotations

import multiprocessing
import statistics
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
INSERT = f"INSERT INTO {TABLE} (state) VALUES ('pending')"
CLAIM = f"""
UPDATE {TABLE} SET state = 'running', started_at = clock_timestamp()
WHERE id = (SELECT id FROM {TABLE} WHERE state = 'pending' AND run_at <= now()
            ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id
"""
FINISH = f"UPDATE {TABLE} SET state = 'done', finished_at = clock_timestamp() WHERE id = %s"


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


def drain(url: str, processes: int) -> tuple[float, int]:
    """Drain the table with `processes` processes; returns (rows per second, rows done once)."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_drain_one, args=(url,)) for _ in range(processes)]
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
    """An idle LISTENing worker; `count` inserts+NOTIFY `spacing` apart. Start - enqueue, ms."""
    ready = threading.Event()

    def listen() -> None:
        with connect(url) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            ready.set()
            done = 0
            while done < count:
                # Drained into a list first: the generator holds the connection's lock.
                list(connection.notifies(timeout=1.0, stop_after=1))
                while (row := connection.execute(CLAIM).fetchone()) is not None:
                    connection.execute(FINISH, row)
                    done += 1

    listener = threading.Thread(target=listen)
    listener.start()
    ready.wait()
    with connect(url) as connection:
        for _ in range(count):
            with connection.transaction():
                connection.execute(INSERT)
                connection.execute(f"NOTIFY {CHANNEL}")
            time.sleep(spacing)
    listener.join()
    with connect(url) as connection:
        rows = connection.execute(
            f"SELECT extract(epoch FROM started_at - requested_at) * 1000 FROM {TABLE}"
        ).fetchall()
    return sorted(float(ms) for (ms,) in rows)


def median(values: list[float]) -> float:
    return statistics.median(values)
