"""`python -m tests.screenshots`: regenerate the admin's screenshots in docs/img/.

Builds a scene in a throwaway SQLite database of the example project: an hour of history
(provisions run at past moments under a moved clock, some refused by the provider), a backlog,
jobs scheduled for later, a job added but not queued, a real `runjobs` process busy with slow
provisions (one of them asked to stop) and a worker row gone stale. Then it serves the admin on
a live server thread, signs in with headless Chromium (`tests.browser`) and photographs, at
1280x900, what docs/admin.md shows: the dashboard, a failed job's page, the provisions' list,
the workers page and a batch under way as they first appear on the screen. `--review` adds
what an operator sees while acting (a running job asked to stop, a new job, the page that asks
before "Requeue all failed"), to look at after changing the admin; the docs do not use them.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from unittest import mock

import django

REPO = Path(__file__).resolve().parent.parent
DATABASE = Path(tempfile.mkdtemp(prefix="jobs-screenshots-")) / "screenshots.sqlite3"
SCENE_ENV = {
    "DJANGO_SETTINGS_MODULE": "project.settings",
    "DATABASE_URL": f"sqlite:///{DATABASE}",
    "JOBS_LEASE_SECONDS": "4",  # the busy worker reports its jobs every second
    "JOBS_LOG_LEVEL": "INFO",  # so each job's page has the lines it logged
    "PROVIDER_BOOT_SECONDS": "0",  # the history is run here, at once
}
os.environ.update(SCENE_ENV)
django.setup()
# The scene runs hundreds of jobs here: their lines go to their rows, the console only warns.
for _handler in logging.getLogger("jobs").handlers:
    _handler.setLevel(logging.WARNING)

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.staticfiles.handlers import StaticFilesHandler  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test.testcases import LiveServerThread  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from jobs import timesource  # noqa: E402
from jobs.contrib.tasks.models import TaskJob  # noqa: E402
from jobs.models import Batch, Worker  # noqa: E402
from project.instances.models import Instance, InstanceProvision  # noqa: E402
from project.instances.services import request_fleet  # noqa: E402
from tests.browser import VIEWPORT, chromium, log_in  # noqa: E402

USERNAME = "admin"
PASSWORD = "screenshots"
SERVED = "average_slow"
BUSY_THREADS = 2
BUSY_PROCESSES = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.screenshots", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    parser.add_argument(
        "--review", action="store_true", help="also photograph pages the docs do not show"
    )
    return parser.parse_args(argv)


def provision(name: str, *, at, queue=None, waited=timedelta(0), attempts=5, run_at=None):
    """A provision of a new instance `name`, enqueued at `at - waited`, not run yet."""
    with mock.patch.object(timesource, "now", return_value=at - waited):
        job = InstanceProvision(instance=Instance.objects.create(name=name), max_attempts=attempts)
        return job.enqueue(queue=queue, run_at=run_at)


def run_at_moment(job: InstanceProvision, at) -> None:
    """Run the provision at `at`, then, a second later, the task its success enqueued."""
    with mock.patch.object(timesource, "now", return_value=at):
        job.run()
    with mock.patch.object(timesource, "now", return_value=at + timedelta(seconds=1)):
        for task in TaskJob.objects.pending():
            task.run()


def build_history(now) -> InstanceProvision:
    """A busy last hour, minute by minute; returns the last job the provider refused."""
    refused = None
    for ago in range(60, 0, -1):
        minute = now - timedelta(minutes=ago)
        for number in range(2 + (ago * 7) % 5):
            at = minute + timedelta(seconds=number * 9)
            waited = timedelta(seconds=(ago * 13 + number * 7) % 40 + 1)
            queue = "urgent_fast" if number == 0 else None
            run_at_moment(provision(f"web-{ago}-{number}", at=at, queue=queue, waited=waited), at)
        if ago % 11 == 3:
            refused = provision(f"Web_{ago}!", at=minute, attempts=1)
            run_at_moment(refused, minute + timedelta(seconds=50))
    return refused


def record_memory_growth() -> None:
    """What workers would have written on the history's rows (it ran here, not in a worker):
    provisions that mostly raise their worker's peak by nothing, and a task that keeps some."""
    finished = InstanceProvision.objects.exclude(finished_at=None).order_by("pk")
    finished.update(memory_growth_kb=0)
    for pk in finished.values_list("pk", flat=True)[::9]:
        InstanceProvision.objects.filter(pk=pk).update(memory_growth_kb=600 + pk % 7 * 300)
    for n, pk in enumerate(TaskJob.objects.exclude(finished_at=None).values_list("pk", flat=True)):
        TaskJob.objects.filter(pk=pk).update(memory_growth_kb=1500 + n % 5 * 200)


def build_present(now) -> InstanceProvision:
    """What is going on now: a backlog, jobs due later, and a worker that went quiet.

    Returns a provision added and not queued yet (`new`), as an operator adds one."""
    for number in range(BUSY_PROCESSES * BUSY_THREADS + 2):
        provision(f"db-{number}", at=now - timedelta(minutes=4 - number / 2))
    for number in range(3):
        provision(f"cache-{number}", at=now, queue="urgent_fast")
    for number in range(3):
        provision(f"eu-{number}", at=now, queue="provision_eu", run_at=now + timedelta(minutes=20))
    Worker.objects.create(
        name="web-2:4121",
        host="web-2",
        pid=4121,
        queues="provision_eu",
        threads=4,
        started_at=now - timedelta(hours=3),
        last_heartbeat_at=now - timedelta(minutes=7),
    )
    return InstanceProvision.objects.create(instance=Instance.objects.create(name="api-1"))


@contextmanager
def busy_worker() -> Iterator[None]:
    """A real autoscaling `runjobs` on the default queue, whose provisions take ten minutes to
    boot: the backlog grows it from one worker process to two, both busy."""
    command = [
        *("manage.py", "runjobs", "--queues", SERVED, "--threads", str(BUSY_THREADS)),
        *("--processes", f"1-{BUSY_PROCESSES}", "--scale-up-after", "1"),
    ]
    process = subprocess.Popen(
        [sys.executable, *command],
        cwd=REPO,
        env={**os.environ, "PROVIDER_BOOT_SECONDS": "600"},
    )
    children = Worker.objects.filter(supervisor__pid=process.pid)
    try:
        deadline = time.monotonic() + 60
        while sum(len(jobs) for jobs in children.values_list("jobs_in_flight", flat=True)) < (
            BUSY_PROCESSES * BUSY_THREADS
        ):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the workers did not start their jobs")
            time.sleep(0.2)
        time.sleep(2)  # a few heartbeats more: each process's memory line has a shape
        yield
    finally:
        for pid in [process.pid, *children.values_list("pid", flat=True)]:
            with suppress(ProcessLookupError):  # the database is thrown away: nothing to hand back
                os.kill(pid, signal.SIGKILL)
        process.wait()


@contextmanager
def live_server() -> Iterator[str]:
    server = LiveServerThread("localhost", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    try:
        yield f"http://localhost:{server.port}"
    finally:
        server.terminate()


def stop_one_busy_job() -> InstanceProvision:
    """Ask one of the busy worker's provisions to stop; it does not check, so it runs on."""
    running = InstanceProvision.objects.running().order_by("pk")
    running.filter(pk=running[0].pk).cancel()
    return running[0]


def pages(review: bool, batch: Batch, **jobs: InstanceProvision) -> list[tuple[str, str, bool]]:
    """(file name, admin URL, whole page or only the first screen) of each photograph."""

    def change(job: InstanceProvision) -> str:
        return reverse("admin:instances_instanceprovision_change", args=[job.pk])

    shots = [
        ("dashboard", reverse("admin:jobs_dashboard"), True),
        ("job", change(jobs["failed"]), True),
        ("changelist", reverse("admin:instances_instanceprovision_changelist"), False),
        ("workers", reverse("admin:jobs_worker_changelist"), False),
        ("batch", reverse("admin:jobs_batch_change", args=[batch.pk]), False),
    ]
    if review:
        shots += [
            ("stop-requested", change(jobs["stopping"]), False),
            ("new-job", change(jobs["new"]), False),
            ("requeue-failed", reverse("admin:instances_instanceprovision_requeue_failed"), False),
        ]
    return shots


def photograph(base_url: str, out: Path, shots: list[tuple[str, str, bool]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        context = browser.new_context(base_url=base_url, viewport=VIEWPORT)
        page = context.new_page()
        log_in(page, USERNAME, PASSWORD)
        for name, url, full_page in shots:
            page.goto(url)
            page.screenshot(path=out / f"{name}.png", full_page=full_page)
            print(out / f"{name}.png")
        context.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        call_command("migrate", verbosity=0)
        get_user_model().objects.create_superuser(USERNAME, password=PASSWORD)
        now = timezone.now()
        failed = build_history(now)
        record_memory_growth()
        new = build_present(now)
        with busy_worker(), live_server() as base_url:
            # A fleet requested while the worker is busy: its batch page shows it under way.
            fleet = Batch.objects.finished_by(request_fleet(["app-1", "app-2"]))
            shots = pages(args.review, fleet, failed=failed, new=new, stopping=stop_one_busy_job())
            photograph(base_url, args.out, shots)
    finally:
        shutil.rmtree(DATABASE.parent)


if __name__ == "__main__":
    main()
