"""Celery's side of the comparison: an app on Redis and a task that does nothing.

`celery -A bench.celery_app worker` runs it; the task's first line stamps its start
(`bench.stamps`), as `NoopJob.perform()` does, so both are timed between the same two
ends. Everything else is Celery's default (prefork pool, concurrency = CPUs, no result
backend). Imports no Django.
"""

import os

from celery import Celery

from bench.stamps import stamp

REDIS_URL_ENV = "BENCH_REDIS_URL"
# A database number of the benchmark's own: it is flushed before each run.
REDIS_URL = os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/13")

app = Celery("bench", broker=REDIS_URL)
app.conf.broker_connection_retry_on_startup = True  # its 5.x default, said so to be quiet


@app.task
def noop(key: object) -> None:
    """Only the start stamp (when BENCH_STAMPS is set): what is measured is Celery."""
    stamp(key)
