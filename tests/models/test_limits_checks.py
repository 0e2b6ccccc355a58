"""`manage.py check` refuses a concurrency_key, concurrency_limit or rate_limit that would
otherwise leave a model silently unlimited (jobs.E014)."""

from datetime import timedelta

import pytest
from django.db import models
from django.test.utils import isolate_apps

from jobs.checks import job_model_errors
from jobs.db.limits import Limits, limits_of
from jobs.models import Job
from tests.testapp.models import LimitedJob, OrderedJob, RatedJob


@isolate_apps("tests.testapp")
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency_limit": 0}, "concurrency_limit must be a positive whole number"),
        ({"concurrency_limit": -2}, "concurrency_limit must be a positive whole number"),
        ({"concurrency_limit": True}, "got True"),
        ({"concurrency_limit": "2"}, "got '2'"),
        ({"rate_limit": (10, 60)}, "rate_limit must be (starts, period)"),
        ({"rate_limit": (0, timedelta(seconds=1))}, "got (0, datetime.timedelta(seconds=1))"),
        ({"rate_limit": (5, timedelta(0))}, "a positive timedelta"),
        ({"rate_limit": 5}, "got 5"),
        ({"concurrency_key": "acount", "concurrency_limit": 2}, "names 'acount': no such field"),
        ({"concurrency_key": "tags", "concurrency_limit": 2}, "names 'tags': no such field"),
        ({"concurrency_key": ("account",), "concurrency_limit": 2}, "must be one field name"),
        ({"concurrency_key": "account"}, "it limits nothing"),
    ],
)
def test_check_rejects_a_malformed_limit(options, message):
    class BadLimits(Job):
        account = models.CharField(max_length=10)
        tags = models.ManyToManyField("testapp.Effect")

        class Meta:
            app_label = "testapp"

        def perform(self):
            pass

    for name, value in options.items():
        setattr(BadLimits, name, value)
    errors = [error for error in job_model_errors(BadLimits) if error.id == "jobs.E014"]
    assert len(errors) == 1, errors
    assert errors[0].msg.startswith("testapp.BadLimits.")
    assert message in errors[0].msg


@isolate_apps("tests.testapp")
def test_check_rejects_a_proxy_whose_limits_differ_from_its_models():
    class Looser(LimitedJob):
        concurrency_limit = 5

        class Meta:
            proxy = True
            app_label = "testapp"

    (error,) = [error for error in job_model_errors(Looser) if error.id == "jobs.E014"]
    assert "Set them there" in error.msg
    assert Looser._meta.constraints == []  # the table's constraints are LimitedJob's


def test_check_accepts_the_test_apps_limited_jobs():
    for model in (LimitedJob, OrderedJob, RatedJob):
        assert job_model_errors(model) == []


@isolate_apps("tests.testapp")
def test_without_a_key_the_whole_model_is_one_key():
    class Exports(Job):
        concurrency_limit = 3
        rate_limit = (10, timedelta(minutes=1))

        class Meta:
            app_label = "testapp"

        def perform(self):
            pass

    limits = limits_of(Exports)
    assert limits == Limits(key=None, concurrency=3, rate=(10, timedelta(minutes=1)))
    assert limits.describe() == "at most 3 running, 10 starts per minute per model"
    slot, room = Exports._meta.constraints
    assert slot.fields == ("concurrency_slot",)
    assert slot.condition == models.Q(state="running")
    assert "concurrency_slot__lt" in str(room.condition)
    assert "__isnull', True" not in str(room.condition)
    assert [index.fields for index in Exports._meta.indexes][-1] == ["started_at"]
    assert job_model_errors(Exports) == []


def test_the_limited_models_get_a_slot_column_and_the_others_do_not():
    assert LimitedJob._meta.get_field("concurrency_slot").null
    assert not any(f.name == "concurrency_slot" for f in RatedJob._meta.fields)


@isolate_apps("tests.testapp")
def test_a_limit_inherited_from_an_abstract_parent_behind_a_mixin_gets_its_slot_column():
    class Limited(Job):
        concurrency_limit = 2

        class Meta:
            abstract = True

    class Mixin:
        def describe(self):
            return "mixed"

    class Sync(Mixin, Limited):
        class Meta:
            app_label = "testapp"

        def perform(self):
            pass

    assert Sync._meta.get_field("concurrency_slot").null
    assert [c.name.rsplit("_", 1)[1] for c in Sync._meta.constraints] == ["slot", "room"]
    assert job_model_errors(Sync) == []
