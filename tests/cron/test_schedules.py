"""JOBS_SCHEDULE and JOBS_QUEUES: a mistake in either fails `manage.py check`, naming it."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from jobs.conf.queues import configured_queues
from jobs.cron.schedules import configured_schedules, parse_schedule
from jobs.durations import parse_duration
from tests.testapp.models import RecordingJob

GOOD = {"job": "testapp.RecordingJob", "cron": "0 3 * * *"}


def check_errors() -> str:
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    return str(raised.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {**GOOD, "cron": "61 3 * * *"},
            "['cron'] is '61 3 * * *', which is not a valid cron expression",
        ),
        ({**GOOD, "cron": "0 3 * *"}, "it needs the five fields minute hour day month weekday"),
        ({**GOOD, "cron": "0 0 3 * * * *"}, "it needs the five fields"),
        ({**GOOD, "job": "nope.Missing"}, "'nope.Missing', which is not an installed model"),
        ({**GOOD, "job": "testapp.Effect"}, "'testapp.Effect', which is not a job model"),
        ({**GOOD, "job": 7}, "must name a job model as 'app_label.ModelName'"),
        (
            {**GOOD, "fields": {"colour": "red"}},
            "names 'colour', which testapp.RecordingJob cannot be given",
        ),
        ({**GOOD, "fields": {"state": "succeeded"}}, "names 'state', which"),
        ({**GOOD, "fields": {"sleep_seconds": "soon"}}, "['sleep_seconds'] is 'soon':"),
        ({**GOOD, "timezone": "Mars/Olympus"}, "'Mars/Olympus', which is not a known timezone"),
        ({"job": "testapp.RecordingJob"}, "needs exactly one of 'cron'"),
        ({**GOOD, "every": "1h"}, "needs exactly one of 'cron'"),
        ({"job": "testapp.RecordingJob", "every": "soon"}, "['every'] is 'soon'; write a duration"),
        ({"job": "testapp.RecordingJob", "every": "1.5s"}, "must be a whole number of seconds"),
        ({**GOOD, "missed": "sometimes"}, "['missed'] is 'sometimes'; use 'run_once' or 'skip'"),
        ({**GOOD, "queue": "no spaces please"}, "queue name 'no spaces please' is invalid"),
        ({**GOOD, "priority": 1000}, "priority 1000 is out of range"),
        ({**GOOD, "cron_expression": "x"}, "unknown key(s) 'cron_expression'"),
        ("0 3 * * *", "must be a dict with 'job' and 'cron' or 'every'"),
    ],
)
def test_a_bad_schedule_fails_the_check_naming_it(spec, message):
    with override_settings(JOBS_SCHEDULE={"nightly": GOOD, "broken": spec}):
        errors = check_errors()
    assert "jobs.E007" in errors
    assert "JOBS_SCHEDULE['broken']" in errors
    assert message in errors
    assert "JOBS_SCHEDULE['nightly']" not in errors


def test_every_broken_schedule_is_reported_not_just_the_first():
    broken = {"a": {**GOOD, "cron": "nope"}, "b": {**GOOD, "job": "x.Y"}}
    with override_settings(JOBS_SCHEDULE=broken):
        errors = check_errors()
    assert "JOBS_SCHEDULE['a']" in errors
    assert "JOBS_SCHEDULE['b']" in errors


def test_a_schedule_name_may_not_pose_as_a_probe():
    with override_settings(JOBS_SCHEDULE={"probe:default": GOOD}):
        assert "not starting with 'probe:'" in check_errors()


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ({"urgent": {"sla": "fast"}}, "JOBS_QUEUES['urgent']['sla'] is 'fast'"),
        ({"urgent": {"sla": 0}}, "it must be longer than zero"),
        ({"urgent": {"probe": "yes"}}, "['probe'] must be True or False"),
        ({"urgent": {"heartbeat": True}}, "the option 'heartbeat' is now called 'probe'"),
        ({"urgent": {"max_failure_rate": 2}}, "must be a share between 0 and 1"),
        ({"urgent": {"sla_seconds": 3}}, "unknown option(s) 'sla_seconds'"),
        ({"bad queue": {}}, "queue name 'bad queue' is invalid"),
        ({"urgent": "30s"}, "must be a dict of options"),
        (["urgent"], "JOBS_QUEUES must be a dict"),
    ],
)
def test_bad_queue_settings_fail_the_check(queues, message):
    with override_settings(JOBS_QUEUES=queues):
        errors = check_errors()
    assert "jobs.E008" in errors
    assert message in errors


def test_good_settings_pass_and_parse():
    with override_settings(
        JOBS_SCHEDULE={
            "nightly": {**GOOD, "fields": {"sleep_seconds": "0.5"}, "queue": "exports"},
            "often": {"job": "testapp.RecordingJob", "every": "15m", "missed": "skip"},
        },
        JOBS_QUEUES={"urgent": {"sla": "30s", "probe": True}, "default": {"sla": 600}},
    ):
        call_command("check", "--fail-level", "WARNING")
        nightly, often, probe = configured_schedules()
        queues = configured_queues()
    assert nightly.model is RecordingJob
    assert nightly.fields == {"sleep_seconds": 0.5}
    assert nightly.queue == "exports"
    assert nightly.missed == "run_once"
    assert often.every == timedelta(minutes=15)
    assert often.missed == "skip"
    assert probe.name == "probe:urgent"
    assert probe.queue == "urgent"
    assert queues["urgent"].sla == timedelta(seconds=30)
    assert queues["urgent"].probe
    assert queues["default"].sla == timedelta(minutes=10)
    assert not queues["default"].probe


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("1h30m", 5400), ("2d", 172800), (1.5, 1.5)]
)
def test_durations_read_as_people_write_them(text, seconds):
    assert parse_duration(text, "X") == timedelta(seconds=seconds)


def test_cron_slots_follow_local_time_across_daylight_saving():
    schedule = parse_schedule("nightly", {**GOOD, "timezone": "Europe/Paris"})
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # CET, UTC+1
    assert schedule.next_slot(before) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # now CEST
    assert schedule.next_slot(datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == datetime(
        2026, 3, 30, 1, 0, tzinfo=UTC
    )
    assert schedule.latest_slot(datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )
    assert schedule.latest_slot(datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)) == datetime(
        2026, 3, 28, 2, 0, tzinfo=UTC
    )


def test_interval_slots_count_from_the_epoch_so_every_clock_agrees():
    schedule = parse_schedule("often", {"job": "testapp.RecordingJob", "every": "1h"})
    now = datetime(2026, 11, 22, 12, 34, 56, 789, tzinfo=UTC)
    assert schedule.latest_slot(now) == datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert schedule.next_slot(now) == datetime(2026, 11, 22, 13, 0, tzinfo=UTC)


def test_a_cron_slot_in_the_hour_repeated_when_clocks_go_back_comes_twice():
    schedule = parse_schedule("night", {**GOOD, "cron": "30 2 * * *", "timezone": "Europe/Paris"})
    first = schedule.next_slot(datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    second = schedule.next_slot(first)
    assert (first, second) == (
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 summer time
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),  # 02:30 winter time
    )
    assert schedule.next_slot(second) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
