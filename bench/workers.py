"""The processes the benchmark measures, and the configurations they run in.

A `Process` is a real subprocess (`manage.py runjobs`, or a Celery worker) logging at INFO
to a temporary file, as in production: the log lines are part of what a job costs, and the
file lets the benchmark count runs independently of any table. A `Configuration` is what a
figure is labelled with: the runjobs options (none: the framework's defaults; or
`--threads N`), the project the worker loads (its DJANGO_SETTINGS_MODULE) and the bench job
model whose rows it is given (`NoopJob` but in W7).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from django.utils import timezone

from bench.models import BenchJob, KeyedNoopJob, LimitedNoopJob, NoopJob
from bench.stamps import STAMPS_ENV
from jobs.models import Worker as WorkerRow

REPO = Path(__file__).resolve().parent.parent
WAIT_TIMEOUT = 300  # seconds to wait for a running worker to register or catch up
STARTED = re.compile(rb"bench\.\w+#(\d+) started")  # a worker serves one bench model
SERVING = re.compile(
    r"\((\d+) thread\(s\)\) serving .*? from \d+ job model\(s\): (.+?)(?: \(until drained\))?$",
    re.MULTILINE,
)


class BenchError(Exception):
    """The framework did something the benchmark cannot report as a number."""


@dataclass(frozen=True)
class Configuration:
    """How a worker is run: `threads` None means runjobs' own default (no --threads)."""

    slug: str  # the prefix of this configuration's keys in BENCH_JSON
    label: str  # what the printed table calls it
    settings: str  # the worker's DJANGO_SETTINGS_MODULE
    threads: int | None
    model: type[BenchJob] = NoopJob  # the one bench model the worker serves and is given

    def options(self) -> list[str]:
        return [] if self.threads is None else ["--threads", str(self.threads)]


def configurations(threads: int) -> dict[str, Configuration]:
    """Every configuration a workload may name, `threads` being the tuned one's --threads."""
    found = [
        Configuration(
            "defaults_example", "defaults, example project", "bench.settings_example", None
        ),
        Configuration("tuned_one", f"--threads {threads}, one model", "bench.settings", threads),
        Configuration("defaults_one", "defaults, one model", "bench.settings", None),
        Configuration("defaults_many", "defaults, 20 models", "bench.settings_many", None),
        Configuration(
            "tuned_many", f"--threads {threads}, 20 models", "bench.settings_many", threads
        ),
        Configuration(
            "defaults_limited", "defaults, limit 2 per key", "bench.settings", None, LimitedNoopJob
        ),
        Configuration("defaults_keyed", "defaults, no limit", "bench.settings", None, KeyedNoopJob),
    ]
    return {configuration.slug: configuration for configuration in found}


class Process:
    """A subprocess whose output goes to a temporary file; stopped with SIGTERM on exit."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.command = command
        self._directory = tempfile.TemporaryDirectory(prefix="bench-")
        path = Path(self._directory.name) / "output"
        self.launched = timezone.now()
        # The process gets a descriptor of its own, opened O_APPEND; the benchmark reads through
        # another. A shared one (a TemporaryFile handed to Popen) shares its offset, so a read
        # here would move where the process writes and overwrite lines under it.
        with path.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, *command],
                cwd=REPO,
                env={**os.environ, **(env or {})},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.log = path.open("rb")  # closed by __exit__
        self._read_to = 0
        self._starts = 0

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop as an operator would (SIGTERM), so no run leaves a process behind."""
        self.stop()
        self.log.close()
        self._directory.cleanup()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.fail("did not stop within 60 s of SIGTERM")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def fail(self, problem: str) -> NoReturn:
        tail = "\n".join(self.output().splitlines()[-20:])
        raise BenchError(f"{' '.join(self.command)} {problem}; end of its log:\n{tail}")

    def wait(self, timeout: float) -> None:
        """Wait for the process to exit by itself, with status 0."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"did not finish within {timeout:.0f} s")
        if code != 0:
            self.fail(f"exited with status {code}")

    def wait_until(self, done: Callable[[], bool], poll: float = 0.05) -> None:
        """Poll `done`, failing early if the process dies and late if it never gets there."""
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not done():
            if (code := self.process.poll()) is not None:
                self.fail(f"exited with status {code}")
            if time.monotonic() > deadline:
                self.fail(f"did not get there within {WAIT_TIMEOUT} s")
            time.sleep(poll)

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)[1]) / 1024


class WorkerProcess(Process):
    """`manage.py runjobs` in a configuration, optionally stamping each job's start."""

    def __init__(
        self, configuration: Configuration, *options: str, stamps: Path | None = None
    ) -> None:
        env = {
            "JOBS_LOG_LEVEL": "INFO",
            "DJANGO_SETTINGS_MODULE": configuration.settings,
            "BENCH_MODELS": configuration.model._meta.label,
        }
        if stamps is not None:
            env[STAMPS_ENV] = str(stamps)
        super().__init__(["manage.py", "runjobs", *configuration.options(), *options], env)

    def wait_until_idle(self) -> None:
        """Registered (its Worker row, not an old one with a reused pid), then time to LISTEN."""
        rows = WorkerRow.objects.filter(pid=self.process.pid, started_at__gte=self.launched)
        self.wait_until(rows.exists)
        time.sleep(0.5)

    def performed(self) -> Counter[str]:
        """How many times the log says each job was started, by primary key."""
        return Counter(pk.decode() for pk in STARTED.findall(self.output().encode()))

    def starts_so_far(self) -> int:
        """Jobs the log says started so far, reading only what was added since the last call."""
        self.log.seek(self._read_to)
        added = self.log.read()
        complete = added[: added.rfind(b"\n") + 1]
        self._read_to += len(complete)
        self._starts += len(STARTED.findall(complete))
        return self._starts

    def served(self) -> tuple[int, str]:
        """The threads and job models the worker said it has when it started (its first such
        line): what "defaults" meant in this run. (0, "?") if the line changed shape."""
        found = SERVING.search(self.output())
        return (int(found[1]), found[2]) if found else (0, "?")
