"""Celery + Redis in the same run as the framework: enqueue, drain and pickup latency.

The same measurements as W1 (`.delay()` one call at a time), W2 (a queue of `--jobs` tasks
drained by a worker with 1, then 2 prefork processes; first task start to last task end)
and W3 (before `.delay()` to the task's first line, an idle worker with Celery's default
concurrency), so the framework's figures can be read over Celery's. Every task must have
run exactly once (by its stamps) before a rate is believed. Skipped, saying why, where
celery is not installed or Redis does not answer.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench import stamps
from bench.rows import Results, percentiles
from bench.workers import BenchError, Process

try:  # an optional comparison: bench/requirements.txt
    import redis

    from bench.celery_app import REDIS_URL, noop
except ImportError:
    redis = None

CELERY_MISSING = "skipped: celery is not installed (pip install -r bench/requirements.txt)"


def unavailable() -> str | None:
    """Why Celery cannot be measured here, or None when it can."""
    if redis is None:
        return CELERY_MISSING
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        return f"skipped: Redis does not answer at {REDIS_URL} ({exc})"
    return None


def flush() -> None:
    """Empty the benchmark's own Redis database (and only it): no task left from a run."""
    redis.Redis.from_url(REDIS_URL).flushdb()


def worker(stamps_path: Path, *options: str) -> Process:
    return Process(
        ["-m", "celery", "-A", "bench.celery_app", "worker", "--loglevel", "INFO", *options],
        {stamps.STAMPS_ENV: str(stamps_path)},
    )


def enqueue(jobs: int) -> float:
    """`jobs` calls of `noop.delay()`, one at a time; tasks per second."""
    began = time.perf_counter()
    for index in range(jobs):
        noop.delay(index)
    return jobs / (time.perf_counter() - began)


def stamped_once(path: Path, keys: set[str]) -> dict[str, tuple[float, float]]:
    """Each key's (started, finished), failing unless every key ran exactly once."""
    found = stamps.read(path)
    by_key = {key: (started, finished) for key, started, finished in found}
    if len(found) != len(keys) or set(by_key) != keys:
        raise BenchError(
            f"EXACTLY-ONCE VIOLATED (Celery): {len(keys)} tasks sent, {len(found)} runs "
            f"of {len(by_key)} distinct tasks"
        )
    return by_key


def drain(jobs: int, concurrency: int, directory: Path) -> float:
    """A worker of `concurrency` processes drains a queue of `jobs` tasks; tasks per second."""
    path = directory / f"drain-{concurrency}"
    with worker(path, "--concurrency", str(concurrency)) as process:
        process.wait_until(lambda: len(stamps.read(path)) >= jobs, poll=0.2)
    runs = stamped_once(path, {str(index) for index in range(jobs)}).values()
    return jobs / (max(finished for _, finished in runs) - min(started for started, _ in runs))


def pickup(count: int, spacing: float, directory: Path) -> dict[str, float]:
    """An idle worker (default concurrency) gets `count` tasks `spacing` apart; ms each."""
    path = directory / "pickup"
    with worker(path) as process:
        noop.delay("warmup")  # answered only once the worker consumes: then it is idle
        process.wait_until(lambda: len(stamps.read(path)) == 1)
        sent = {}
        for index in range(count):
            sent[str(index)] = time.time()
            noop.delay(index)
            time.sleep(spacing)
        process.wait_until(lambda: len(stamps.read(path)) >= count + 1, poll=0.2)
    runs = stamped_once(path, {"warmup", *sent})
    return percentiles([(runs[key][0] - before) * 1000 for key, before in sent.items()])


def run(jobs: int, latency_jobs: int, spacing: float) -> Results:
    """One run: enqueue rate, drains with 1 and 2 processes, pickup latency."""
    result: Results = {}
    with tempfile.TemporaryDirectory() as directory:
        for concurrency in (1, 2):
            flush()
            queued = enqueue(jobs)
            result.setdefault("enqueue_per_s", queued)
            result[f"{concurrency}p_jobs_per_s"] = drain(jobs, concurrency, Path(directory))
        flush()
        result |= pickup(latency_jobs, spacing, Path(directory))
    flush()
    return result
