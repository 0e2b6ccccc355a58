"""The example project as users run it, plus the benchmark's job model.

Unlike `bench.settings`, the example's probed queue (JOBS_QUEUES, so the clock puts a
latency probe on it every minute) and its Tasks API backend (TASKS, rows in
`jobs_tasks.TaskJob`) stay on: a worker serves the example's job models and the probes'
and the tasks' tables beside `NoopJob`, which is what a real project pays per claim.
"""

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
DEBUG = False
