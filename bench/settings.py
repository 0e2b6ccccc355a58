"""The project's settings plus the benchmark's job model, tuned as production would be."""

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
DEBUG = False
# The example's probed queue and its Tasks API backend would each add a job model to
# claim from (and the probes a clock): the benchmark measures the framework's defaults,
# where neither is configured.
JOBS_QUEUES: dict = {}
JOBS_SCHEDULE: dict = {}
TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
