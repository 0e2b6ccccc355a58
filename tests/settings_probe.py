"""Test settings for worker processes that run the clock for a probed queue."""

from tests.settings import *  # noqa: F403

JOBS_QUEUES = {"average_slow": {"sla": "30s", "probe": True}}
