"""The MariaDB and MySQL backend (`jobs.db.mysql`): what job tables' partial indexes and
partial unique constraints become there, and refusing Django's own MySQL backend."""

import pytest
from django.db import IntegrityError, connection, models, transaction

from jobs.checks import check_job_databases
from jobs.db.mysql.engine import MySQLEngine
from jobs.db.mysql.schema import flag_column, stored_index
from jobs.errors import ConfigurationError
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
