"""The project's settings plus the benchmark's job model, tuned as production would be."""

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
DEBUG = False
# The example's heartbeat queue would add a clock and a second job model to claim from:
# the benchmark measures the framework's defaults, where neither exists.
JOBS_QUEUES: dict = {}
JOBS_SCHEDULE: dict = {}
