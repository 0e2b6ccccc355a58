"""The MariaDB and MySQL backend (`jobs.db.mysql`): what job tables' partial indexes and
partial unique constraints become there, refusing Django's own MySQL backend, and InnoDB's
deadlock between writers of one unique key, and a job's write to its own row taking the row
before its index entries."""

import threading
import time

import pytest
from django.db import IntegrityError, OperationalError, connection, connections, models, transaction
from django.utils import timezone

from jobs.checks import check_job_databases
from jobs.db import engine_for
from jobs.db.mysql.engine import MySQLEngine
from jobs.db.mysql.schema import flag_column, stored_index
from jobs.errors import ConfigurationError, DuplicateJob
from jobs.models.options import limit_constraints, unique_constraint
from jobs.states import JobState
from tests.testapp.models import LimitedJob, RecordingJob, UniqueJob

on_mysql = pytest.mark.skipif(connection.vendor != "mysql", reason="MariaDB or MySQL")


def index_named(model: type, suffix: str) -> models.Index:
    return next(index for index in model._meta.indexes if index.name.endswith(suffix))


def test_a_partial_index_on_one_state_becomes_an_index_led_by_state():
    pending = stored_index(index_named(RecordingJob, "_pend"))
    assert pending.condition is None
    assert pending.fields == ["state", "queue", "-priority", "run_at", "id"]
    assert pending.name == index_named(RecordingJob, "_pend").name


def test_an_index_already_led_by_state_keeps_its_fields_and_loses_only_its_condition():
    finished = index_named(RecordingJob, "_fin")
    assert (stored_index(finished).fields, stored_index(finished).condition) == (
        finished.fields,
        None,
    )


def test_any_other_condition_is_dropped_as_django_drops_it():
    index = models.Index(fields=["queue"], condition=models.Q(priority__gt=0), name="other")
    assert (stored_index(index).fields, stored_index(index).condition) == (["queue"], None)


@on_mysql
@pytest.mark.django_db
def test_the_pending_rows_are_indexed_in_claim_order():
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, RecordingJob._meta.db_table)
    pending = found[index_named(RecordingJob, "_pend").name]
    assert pending["columns"] == ["state", "queue", "priority", "run_at", "id"]
    assert pending["orders"] == ["ASC", "ASC", "DESC", "ASC", "ASC"]


@on_mysql
@pytest.mark.django_db
def test_unique_on_is_kept_by_the_database_for_active_rows_only_whoever_writes():
    """Raw SQL, not the ORM: the database itself refuses the second active row, and lets
    finished rows with the same key be; the flag column is invisible to `SELECT *`."""
    name = unique_constraint(UniqueJob).name
    table = connection.ops.quote_name(UniqueJob._meta.db_table)
    columns = "state, queue, priority, max_attempts, attempts, claimed_by, error_type,"
    columns += " error_message, error_traceback, error_history, log, account, report,"
    columns += " sleep_seconds, fail, has_dependents, stack"
    insert = (
        f"INSERT INTO {table} ({columns}) VALUES"
        " (%s, 'default', 0, 3, 0, '', '', '', '', '[]', '', 'acme', 'weekly', 0, 0, 0, '')"
    )
    with connection.cursor() as cursor:
        for state in (JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.PENDING):
            cursor.execute(insert, [state])
        with pytest.raises(IntegrityError, match=name), transaction.atomic():
            cursor.execute(insert, [JobState.RUNNING])
        cursor.execute(f"SELECT * FROM {table}")
        assert flag_column(name) not in [column[0] for column in cursor.description]
    assert UniqueJob.objects.count() == 3


@on_mysql
@pytest.mark.django_db
def test_a_concurrency_slot_is_unique_per_key_among_running_rows():
    slot, _room = limit_constraints(LimitedJob)
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, LimitedJob._meta.db_table)
    assert found[slot.name]["unique"]
    assert found[slot.name]["columns"] == ["account", "concurrency_slot", flag_column(slot.name)]


def plain_mysql_connection():
    """A connection object of Django's own MySQL backend (never connected)."""
    pytest.importorskip("MySQLdb", reason="needs mysqlclient (requirements-mariadb.txt)")
    from django.db.backends.mysql import base

    return base.DatabaseWrapper({**connection.settings_dict, "ENGINE": "x"}, alias="default")


def test_the_engine_refuses_django_s_own_mysql_backend():
    with pytest.raises(ConfigurationError, match=r"set its ENGINE to 'jobs\.db\.mysql'"):
        MySQLEngine(plain_mysql_connection())


def test_check_names_the_backend_job_tables_need(monkeypatch):
    monkeypatch.setattr("jobs.checks.connections", {"default": plain_mysql_connection()})
    [problem] = check_job_databases()
    assert problem.id == "jobs.E020"
    assert "Set its ENGINE to 'jobs.db.mysql'" in problem.hint


def waiting(statement: str) -> int:
    """Sessions whose statement starting with `statement` has been waiting a quarter second."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
            " WHERE INFO LIKE %s AND TIME_MS > 250",
            [f"{statement}%"],
        )
        return cursor.fetchone()[0]


@on_mysql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_callers_transaction", [False, True])
def test_a_deadlock_between_enqueues_of_one_key_is_retried_when_it_was_the_whole_transaction(
    in_callers_transaction,
):
    """InnoDB's own example of a deadlock, forced: a third session holds an uncommitted active
    row for the key, two enqueues of that key wait for it, and it rolls back; each enqueue
    then holds a shared lock and wants an exclusive one, and InnoDB rolls one back. That one
    is tried again and refused as a duplicate of the other; inside a transaction of the
    caller's, which InnoDB has rolled back, the deadlock is raised instead."""
    holder = connections.create_connection("default")
    holder.set_autocommit(False)
    outcomes: list[object] = []

    def enqueue() -> None:
        try:
            if in_callers_transaction:
                with transaction.atomic():
                    outcomes.append(UniqueJob.objects.enqueue(account="deadlock"))
            else:
                outcomes.append(UniqueJob.objects.enqueue(account="deadlock"))
        except Exception as exc:  # the test sorts what each thread got
            outcomes.append(exc)
        finally:
            connections.close_all()

    try:
        with holder.cursor() as cursor:
            table = connection.ops.quote_name(UniqueJob._meta.db_table)
            cursor.execute(
                f"INSERT INTO {table} (state, queue, priority, max_attempts, attempts, claimed_by,"
                " error_type, error_message, error_traceback, error_history, log, account,"
                " report, sleep_seconds, fail, has_dependents, stack) VALUES ('pending',"
                " 'default', 0, 1, 0, '', '', '', '', '[]', '', 'deadlock', '', 0, 0, 0, '')"
            )
        threads = [threading.Thread(target=enqueue) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while waiting("INSERT INTO `testapp_uniquejob`") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting("INSERT INTO `testapp_uniquejob`") == 2, (
            "both enqueues should be waiting for the holder's row"
        )
        holder.rollback()
        for thread in threads:
            thread.join(30)
    finally:
        holder.close()

    jobs = [outcome for outcome in outcomes if isinstance(outcome, UniqueJob)]
    errors = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert (len(jobs), len(errors)) == (1, 1), outcomes
    if in_callers_transaction:
        assert isinstance(errors[0], OperationalError)
        assert errors[0].args[0] == 1213
    else:
        assert isinstance(errors[0], DuplicateJob)
        assert errors[0].existing.pk == jobs[0].pk
    assert list(UniqueJob.objects.values_list("pk", flat=True)) == [jobs[0].pk]


def innodb_deadlocks() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")
        return int(cursor.fetchone()[1])


def report_progress(job: RecordingJob) -> None:
    job.set_progress(5, 5)


def record_success(job: RecordingJob) -> None:
    engine_for("default").move_row(
        job,
        {JobState.RUNNING},
        JobState.SUCCEEDED,
        guard=job._claim(),
        changes={"progress_done": 5},
    )


@on_mysql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("write", [report_progress, record_success])
def test_a_write_to_a_running_row_by_its_key_takes_the_row_before_its_index_entries(write):
    """The only running row of its table: MariaDB would plan a fenced write by key (`WHERE
    id = ? AND state = 'running' AND ...`: the job's progress, a move to its outcome) through
    the `state`-led index, locking that entry before the row, while a lease renewal holds the
    row and wants the entry (`lease_expires_at` is in it). InnoDB then killed the write as a
    deadlock's victim (seen failing a 2,000-item iteration on its last attempt). Through the
    primary key the write waits for the renewal's commit, and neither is killed."""
    job = RecordingJob.objects.create(label_text="alone")
    RecordingJob.objects.filter(pk=job.pk).update(
        state=JobState.RUNNING, claimed_by="host:1", attempts=1, lease_expires_at=timezone.now()
    )
    job.refresh_from_db()
    table = RecordingJob._meta.db_table
    deadlocks_before = innodb_deadlocks()
    holder = connections.create_connection("default")
    holder.set_autocommit(False)
    errors: list[Exception] = []

    def write_in_thread() -> None:
        try:
            write(job)
        except Exception as exc:  # the test asserts there is none
            errors.append(exc)
        finally:
            connections.close_all()

    try:
        with holder.cursor() as cursor:
            # A renewal's order: the row through the primary key, then its index entries.
            cursor.execute(
                f"SELECT id FROM `{table}` FORCE INDEX (PRIMARY) WHERE id = %s FOR UPDATE", [job.pk]
            )
            writer = threading.Thread(target=write_in_thread)
            writer.start()
            deadline = time.monotonic() + 20
            while waiting(f"UPDATE `{table}`") < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert waiting(f"UPDATE `{table}`") == 1, "the write should wait for the holder"
            cursor.execute(
                f"UPDATE `{table}` SET lease_expires_at = lease_expires_at + INTERVAL 1 MINUTE"
                " WHERE id = %s",
                [job.pk],
            )
        holder.commit()
        writer.join(30)
    finally:
        holder.close()

    assert errors == []
    assert innodb_deadlocks() == deadlocks_before
    row = RecordingJob.objects.get(pk=job.pk)
    moved = JobState.SUCCEEDED if write is record_success else JobState.RUNNING
    assert (row.state, row.progress_done) == (moved, 5)
