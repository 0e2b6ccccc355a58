"""`bench.settings` plus 19 empty job models (`bench.many`): W5's project of 20 job models."""

from bench.settings import *  # noqa: F403
from bench.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.many"]
