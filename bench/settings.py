"""One job model (`bench.NoopJob`) on the project's settings, tuned as production would be.

The example's domain app (its `InstanceProvision` job model) is left out, and so are its
probed queue and its Tasks API backend, which would each add a job model to claim from (and
the probes a clock): a worker here serves `NoopJob` alone, or the one bench model its
configuration names (W7). `bench.settings_example` is the
example project as users run it.
"""

import os

from jobs.contrib.tasks.api import IMMEDIATE_BACKEND
from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*(app for app in INSTALLED_APPS if app != "project.instances"), "bench"]
ROOT_URLCONF = "bench.urls"
DEBUG = False
JOBS_QUEUES: dict = {}
JOBS_SCHEDULE: dict = {}
TASKS = {"default": {"BACKEND": IMMEDIATE_BACKEND}}
# The bench job models a worker serves (`bench.models.BenchJob.in_use`), comma-separated:
# the benchmark names its configuration's model (`bench.workers.Configuration.model`).
BENCH_MODELS = tuple(os.environ.get("BENCH_MODELS", "bench.NoopJob").split(","))
