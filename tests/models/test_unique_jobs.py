"""Unique jobs (`unique_on`): at most one active row per key, enforced by the database."""

import pytest
from django.db import IntegrityError, connection, models, transaction
from django.test.utils import isolate_apps

from jobs.checks import job_model_errors
from jobs.errors import ConfigurationError, DuplicateJob
from jobs.models import Job, JobState
from jobs.models.options import ACTIVE_STATES
from jobs.signals import job_enqueued
from tests.testapp.models import Effect, RecordingJob, UniqueJob

pytestmark = pytest.mark.django_db


def active(**key):
    return UniqueJob.objects.filter(state__in=ACTIVE_STATES, **key)


def test_unique_on_is_a_partial_unique_constraint_in_the_models_migration():
    (constraint,) = UniqueJob._meta.constraints
    assert isinstance(constraint, models.UniqueConstraint)
    assert constraint.fields == ("account", "report")
    assert constraint.condition == models.Q(state__in=["waiting", "pending", "running"])
    assert constraint.name == "testapp_uniquejo_33f1d4d3_uniq"
    assert len(constraint.name) <= 30
    with connection.cursor() as cursor:
        names = connection.introspection.get_constraints(cursor, UniqueJob._meta.db_table)
    assert names[constraint.name]["unique"]


def test_a_raw_sql_insert_of_a_second_active_row_fails_with_an_integrity_error():
    UniqueJob.objects.enqueue(account="acme", report="daily")
    table = connection.ops.quote_name(UniqueJob._meta.db_table)
    insert = (
        f"INSERT INTO {table} (state, queue, priority, max_attempts, attempts, claimed_by,"
        " error_type, error_message, error_traceback, error_history, log, account, report,"
        " sleep_seconds, fail) VALUES (%s, 'default', 0, 1, 0, '', '', '', '', '[]', '',"
        " 'acme', 'daily', 0, %s)"
    )
    for state in ("waiting", "pending", "running"):
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(insert, [state, False])
    with connection.cursor() as cursor:  # finished and new rows are not counted
        for state in ("succeeded", "failed", "cancelled", "new"):
            cursor.execute(insert, [state, False])
    assert active(account="acme").count() == 1
    assert UniqueJob.objects.filter(account="acme").count() == 5


def test_enqueue_of_a_duplicate_raises_duplicate_job_naming_the_active_job():
    first = UniqueJob.objects.create(account="acme", report="daily").enqueue()
    second = UniqueJob.objects.create(account="acme", report="daily")
    with pytest.raises(DuplicateJob) as refused:
        second.enqueue()
    assert refused.value.existing.pk == first.pk
    assert f"testapp.UniqueJob#{first.pk} is pending" in str(refused.value)
    assert "account='acme', report='daily'" in str(refused.value)
    second.refresh_from_db()
    assert second.state == JobState.NEW, "a row created new then refused stays new"
    assert active(account="acme").count() == 1


def test_every_enqueue_path_refuses_a_duplicate_and_writes_nothing():
    first = UniqueJob.objects.enqueue(account="acme")
    unsaved = UniqueJob(account="acme")
    with pytest.raises(DuplicateJob) as refused:
        unsaved.enqueue()
    assert refused.value.existing.pk == first.pk
    assert (unsaved.pk, unsaved._state.adding, unsaved.state) == (None, True, JobState.NEW)
    with pytest.raises(DuplicateJob) as refused:
        UniqueJob.objects.enqueue(account="acme", priority=9)
    assert refused.value.existing.pk == first.pk
    assert UniqueJob.objects.count() == 1


def test_a_refused_enqueue_sends_no_job_enqueued():
    UniqueJob.objects.enqueue(account="acme")
    seen = []
    job_enqueued.connect(lambda job, **kwargs: seen.append(job), weak=False, dispatch_uid="u")
    try:
        with pytest.raises(DuplicateJob):
            UniqueJob.objects.enqueue(account="acme")
    finally:
        job_enqueued.disconnect(dispatch_uid="u")
    assert seen == []


def test_a_running_job_blocks_its_key_too_and_other_keys_are_free():
    first = UniqueJob.objects.enqueue(account="acme")
    UniqueJob.objects.filter(pk=first.pk).update(state=JobState.RUNNING)
    with pytest.raises(DuplicateJob, match="is running"):
        UniqueJob.objects.enqueue(account="acme")
    UniqueJob.objects.enqueue(account="acme", report="weekly")
    UniqueJob.objects.enqueue(account="globex")
    assert active().count() == 3


@pytest.mark.django_db(transaction=True)
def test_the_callers_transaction_carries_on_after_a_duplicate_and_commits():
    first = UniqueJob.objects.enqueue(account="acme")
    with transaction.atomic():
        with pytest.raises(DuplicateJob) as refused:
            UniqueJob.objects.create(account="acme").enqueue()
        assert refused.value.existing.pk == first.pk
        with pytest.raises(DuplicateJob):
            UniqueJob.objects.enqueue(account="acme")
        later = UniqueJob.objects.enqueue(account="globex")
        RecordingJob.objects.create(label_text="after the duplicate")
    assert UniqueJob.objects.filter(pk=later.pk, state=JobState.PENDING).exists()
    assert RecordingJob.objects.filter(label_text="after the duplicate").exists()
    acme = UniqueJob.objects.filter(account="acme").order_by("pk")
    assert list(acme.values_list("state", flat=True)) == [
        "pending",
        "new",
    ]


def test_get_or_enqueue_creates_once_then_returns_the_active_job():
    job, created = UniqueJob.objects.get_or_enqueue(account="acme", report="daily")
    assert created
    assert job.state == JobState.PENDING
    again, created = UniqueJob.objects.get_or_enqueue(account="acme", report="daily", priority=7)
    assert not created
    assert again.pk == job.pk
    assert again.priority == 0
    other, created = UniqueJob.objects.get_or_enqueue(account="acme", report="weekly")
    assert created
    assert other.pk != job.pk
    assert UniqueJob.objects.count() == 2


def test_get_or_enqueue_needs_unique_on():
    with pytest.raises(ConfigurationError, match="needs unique_on"):
        RecordingJob.objects.get_or_enqueue(label_text="x")
    assert not RecordingJob.objects.exists()


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "cancelled"])
def test_a_finished_job_never_blocks_a_new_one(outcome):
    first = UniqueJob.objects.create(account="acme", fail=outcome == "failed")
    if outcome == "cancelled":
        first.enqueue().cancel()
    else:
        first.enqueue().run()
    assert first.state == outcome
    job, created = UniqueJob.objects.get_or_enqueue(account="acme")
    assert created
    assert job.pk != first.pk
    job.run()
    UniqueJob.objects.create(account="acme").enqueue()
    assert active(account="acme").count() == 1


def test_requeue_of_a_failed_job_whose_key_has_a_newer_active_one_raises_duplicate_job():
    failed = UniqueJob.objects.create(account="acme", fail=True).enqueue().run()
    assert failed.state == JobState.FAILED
    newer = UniqueJob.objects.enqueue(account="acme")
    with pytest.raises(DuplicateJob) as refused:
        failed.requeue()
    assert refused.value.existing.pk == newer.pk
    failed.refresh_from_db()
    assert failed.state == JobState.FAILED
    newer.cancel()
    assert failed.requeue().state == JobState.PENDING


def test_requeueing_two_failed_jobs_of_one_key_together_is_refused_whole():
    failed = [UniqueJob.objects.create(account="acme", fail=True).enqueue().run() for _ in "ab"]
    UniqueJob.objects.create(account="globex", fail=True).enqueue().run()
    with pytest.raises(DuplicateJob, match="two of the UniqueJob jobs") as refused:
        UniqueJob.objects.failed().requeue()
    assert refused.value.existing is None
    assert UniqueJob.objects.failed().count() == 3
    assert UniqueJob.objects.filter(pk=failed[0].pk).requeue() == 1


def test_bulk_enqueue_is_all_or_nothing_with_a_duplicate_inside_or_outside():
    existing = UniqueJob.objects.enqueue(account="acme")
    jobs = [UniqueJob(account=f"a{n}") for n in range(5)] + [UniqueJob(account="acme")]
    with pytest.raises(DuplicateJob) as refused:
        UniqueJob.objects.bulk_enqueue(jobs, batch_size=2)
    assert refused.value.existing.pk == existing.pk
    assert UniqueJob.objects.count() == 1
    assert all(job.pk is None and job.state == JobState.NEW for job in jobs)
    with pytest.raises(DuplicateJob, match="same unique_on key") as refused:
        UniqueJob.objects.bulk_enqueue([UniqueJob(account="x"), UniqueJob(account="x")])
    assert refused.value.existing is None
    created = UniqueJob.objects.bulk_enqueue(jobs[:5], batch_size=2)
    assert len(created) == 5
    assert active().count() == 6


@isolate_apps("tests.testapp")
def test_a_proxy_shares_its_models_key():
    class UniqueJobProxy(UniqueJob):
        class Meta:
            proxy = True
            app_label = "testapp"

    UniqueJob.objects.enqueue(account="acme")
    with pytest.raises(DuplicateJob):
        UniqueJobProxy.objects.enqueue(account="acme")
    assert UniqueJobProxy._meta.constraints == []  # its table's constraint is UniqueJob's
    assert job_model_errors(UniqueJobProxy) == []


@isolate_apps("tests.testapp")
def test_an_abstract_parents_unique_on_gives_each_concrete_child_its_own_constraint():
    class PerAccount(Job):
        account = models.CharField(max_length=10)
        unique_on = ("account",)

        class Meta:
            abstract = True

    class Export(PerAccount):
        class Meta:
            app_label = "testapp"

        def perform(self):
            pass

    assert PerAccount._meta.constraints == []
    (constraint,) = Export._meta.constraints
    assert constraint.fields == ("account",)
    assert constraint.name.endswith("_uniq")
    assert Export._meta.original_attrs["constraints"] == [constraint]


@isolate_apps("tests.testapp")
@pytest.mark.parametrize(
    ("unique_on", "message"),
    [
        ("account", "must be a tuple of field names, got 'account'"),
        ((1, 2), "must be a tuple of field names"),
        ((), "is empty"),
        (("account", "colour"), "names 'colour': no such field"),
        (("tags",), "names 'tags': no such field"),
    ],
)
def test_check_rejects_a_malformed_unique_on(unique_on, message):
    class BadUnique(Job):
        account = models.CharField(max_length=10)
        tags = models.ManyToManyField("testapp.Effect")

        class Meta:
            app_label = "testapp"

        def perform(self):
            pass

    BadUnique.unique_on = unique_on
    errors = [error for error in job_model_errors(BadUnique) if error.id == "jobs.E013"]
    assert len(errors) == 1
    assert errors[0].msg.startswith("testapp.BadUnique.unique_on ")
    assert message in errors[0].msg


@isolate_apps("tests.testapp")
def test_check_rejects_a_proxy_whose_unique_on_differs_from_its_models():
    class OtherKey(UniqueJob):
        unique_on = ("account",)

        class Meta:
            proxy = True
            app_label = "testapp"

    (error,) = [error for error in job_model_errors(OtherKey) if error.id == "jobs.E013"]
    assert "set it there" in error.msg
    assert OtherKey._meta.constraints == []


def test_check_accepts_the_test_apps_unique_job():
    assert job_model_errors(UniqueJob) == []
    assert Effect.objects.count() == 0


def test_run_of_a_new_row_whose_key_is_active_raises_duplicate_job_and_leaves_it_new():
    first = UniqueJob.objects.create(account="acme").enqueue()
    second = UniqueJob.objects.create(account="acme")
    with pytest.raises(DuplicateJob) as refused:
        second.run()
    assert refused.value.existing == first
    second.refresh_from_db()
    assert (second.state, second.attempts) == ("new", 0)
    assert not Effect.objects.exists()
