"""`jobs status`: the dashboard's queues and workers in a terminal, once or redrawn.

The numbers are the admin dashboard's own (`jobs.monitoring.dashboard.summarize` and
`running_workers`), so the terminal and the browser never disagree about what a count
means. `--watch` is for an operator's eyes: it keeps drawing through a database outage
(saying so), and Ctrl-C ends it with status 0.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand

from jobs import timesource
from jobs.cli.arguments import (
    Subcommand,
    database_unreachable,
    line_width,
    positive_number,
    write_table,
)
from jobs.cli.listing import local_time
from jobs.db.outage import CONNECTION_ERRORS, close_broken_connections
from jobs.durations import format_duration
from jobs.models.discovery import job_models
from jobs.monitoring.dashboard import (
    Counts,
    WorkerStatus,
    queue_pauses,
    running_workers,
    summarize,
)

CLEAR_SCREEN = "\x1b[H\x1b[2J"  # cursor home, erase the screen
QUEUE_HEADERS = ("QUEUE", "PENDING", "SCHEDULED", "RUNNING", "FAILED 1H", "OLDEST WAIT")
WORKER_HEADERS = ("WORKER", "QUEUES", "THREADS BUSY", "LAST HEARTBEAT", "")
PAUSE_HEADERS = ("PAUSED QUEUE", "MODEL", "SINCE", "BY", "REASON")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--watch",
        type=positive_number("seconds"),
        metavar="SECONDS",
        help="Redraw every SECONDS until Ctrl-C.",
    )


def handle(command: BaseCommand, *, watch: float | None, **options: Any) -> None:
    if watch is None:
        try:
            draw(command, timesource.now())
        except CONNECTION_ERRORS as exc:
            raise database_unreachable(exc) from exc
        return
    clear = command.stdout.isatty()
    try:
        while True:
            if clear:
                command.stdout.write(CLEAR_SCREEN, ending="")
            now = timesource.now()
            command.stdout.write(f"every {watch:g}s; Ctrl-C to stop")
            try:
                draw(command, now)
            except CONNECTION_ERRORS as exc:
                close_broken_connections()
                command.stdout.write(str(database_unreachable(exc)))
            command.stdout.write("")
            command.stdout.flush()
            time.sleep(watch)
    except KeyboardInterrupt:
        command.stdout.write("")


def draw(command: BaseCommand, now: datetime) -> None:
    """The queues (per queue, then all together), the paused ones, and the worker
    processes, as of `now`."""
    summary = summarize(job_models(), now)
    pauses = [pause for queue in queue_pauses().values() for pause in queue]
    workers = running_workers(now)
    command.stdout.write(f"jobs at {local_time(now)}")
    command.stdout.write("")
    if summary.queues:
        rows = [(name, *counts(queue)) for name, queue in summary.queues.items()]
        write_table(command, QUEUE_HEADERS, [*rows, ("all", *counts(summary.total))])
    else:
        command.stdout.write("no queue has jobs pending, running or failed in the last day")
    command.stdout.write("")
    if pauses:
        rows = [
            (
                pause.queue,
                pause.model or "all",
                local_time(pause.paused_at),
                pause.paused_by,
                pause.reason,
            )
            for pause in pauses
        ]
        write_table(command, PAUSE_HEADERS, rows, width=line_width(command))
        command.stdout.write("")
    if workers.processes:
        write_table(command, WORKER_HEADERS, [worker_cells(status) for status in workers.processes])
    else:
        command.stdout.write("no worker is running")


def counts(queue: Counts) -> tuple:
    wait = "" if queue.oldest_wait is None else format_duration(queue.oldest_wait)
    return (queue.pending, queue.scheduled, queue.running, queue.failed_last_hour, wait)


def worker_cells(status: WorkerStatus) -> tuple:
    worker = status.worker
    return (
        worker.name,
        worker.queues or "all",
        f"{len(worker.jobs_in_flight)}/{worker.threads}",
        f"{format_duration(status.since_heartbeat)} ago",
        "STALE" if status.stale else "",
    )


COMMAND = Subcommand(
    help="Show queues and workers, once or every N seconds (--watch N).",
    description="Show queues (pending, scheduled, running, failed, oldest wait) and workers; "
    "--watch SECONDS redraws until Ctrl-C.",
    add_arguments=add_arguments,
    handle=handle,
)
