"""A duration too long for a clock (`every`, `sla`, a CLI duration of "99999999999d") is a
clear configuration error naming the setting, never an OverflowError out of `runjobs`."""

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from jobs.checks import check_schedules_and_queues
from jobs.durations import MAX_DAYS, parse_duration

HUGE = "99999999999d"


@pytest.mark.parametrize("value", [HUGE, f"{MAX_DAYS + 1}d", "9" * 400 + "s", 1e300])
def test_a_duration_past_the_longest_is_a_value_error_naming_it(value):
    with pytest.raises(ValueError, match=rf"^X is .*; the longest duration is {MAX_DAYS}d$"):
        parse_duration(value, "X")


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_an_infinite_or_nan_duration_is_refused_too(value):
    with pytest.raises(ValueError, match="the longest duration"):
        parse_duration(value, "X")


def test_the_longest_duration_is_accepted():
    assert parse_duration(f"{MAX_DAYS}d", "X").days == MAX_DAYS


def test_an_every_too_long_is_a_check_error(settings):
    settings.JOBS_SCHEDULE = {"nightly": {"job": "testapp.RecordingJob", "every": HUGE}}
    (error,) = check_schedules_and_queues()
    assert error.id == "jobs.E007"
    assert error.msg == (
        f"JOBS_SCHEDULE['nightly']['every'] is '{HUGE}'; the longest duration is {MAX_DAYS}d"
    )


def test_an_sla_too_long_is_a_check_error(settings):
    settings.JOBS_QUEUES = {"reports": {"sla": HUGE}}
    (error,) = check_schedules_and_queues()
    assert error.id == "jobs.E008"
    assert f"the longest duration is {MAX_DAYS}d" in error.msg


@pytest.mark.django_db
def test_runjobs_with_an_every_too_long_stops_at_the_checks_with_the_message(settings):
    settings.JOBS_SCHEDULE = {"nightly": {"job": "testapp.RecordingJob", "every": HUGE}}
    with pytest.raises(SystemCheckError, match=r"jobs\.E007.*the longest duration is"):
        call_command("runjobs", "--burst", skip_checks=False)
