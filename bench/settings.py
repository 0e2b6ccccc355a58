"""The project's settings plus the benchmark's job model, tuned as production would be."""

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
DEBUG = False
