"""Test settings for worker processes that run the clock: a schedule firing every second."""

from tests.settings import *  # noqa: F403

JOBS_SCHEDULE = {
    "every-second": {
        "job": "testapp.RecordingJob",
        "every": "1s",
        "fields": {"label_text": "scheduled"},
    },
}
