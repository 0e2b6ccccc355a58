"""System checks: a broken job model or an unsafe database is reported by `manage.py check`."""

import pytest
from django.core.management import call_command
from django.db import connection, models
from django.test import modify_settings
from django.test.utils import isolate_apps

from jobs.checks import (
    check_job_databases,
    check_settings,
    check_tasks_backend,
    job_model_errors,
)
from jobs.db import ENGINES, engine_for
from jobs.errors import ConfigurationError
from jobs.models import Job


@isolate_apps("tests.testapp")
def test_job_model_without_perform_is_an_error():
    class Forgetful(Job):
        note = models.TextField()

        class Meta:
            app_label = "testapp"

    assert [error.id for error in job_model_errors(Forgetful)] == ["jobs.E001"]


@isolate_apps("tests.testapp")
def test_invalid_class_defaults_are_errors_naming_the_option():
    class Misconfigured(Job):
        queue = "has spaces"
        priority = 500
        max_attempts = 0

        class Meta:
            app_label = "testapp"

        def perform(self):
            return None

    errors = job_model_errors(Misconfigured)
    assert [error.id for error in errors] == ["jobs.E002"] * 3
    messages = " ".join(error.msg for error in errors)
    assert "testapp.Misconfigured.queue: queue name 'has spaces' is invalid" in messages
    assert "priority 500 is out of range" in messages
    assert "max_attempts must be an integer of at least 1, got 0" in messages


@pytest.mark.django_db  # Django 6.1's JSONField check asks SQLite what it supports
def test_installed_job_models_pass_the_checks():
    call_command("check", "--fail-level", "WARNING")


@pytest.mark.skipif(connection.vendor != "sqlite", reason="a SQLite setting")
def test_sqlite_without_immediate_transactions_is_warned_about(monkeypatch):
    assert check_job_databases() == []
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", {"timeout": 20})
    assert [warning.id for warning in check_job_databases()] == ["jobs.W001"]


def test_a_database_jobs_cannot_claim_from_is_an_error(monkeypatch):
    monkeypatch.delitem(ENGINES, connection.vendor)
    assert [error.id for error in check_job_databases()] == ["jobs.E003"]
    with pytest.raises(ConfigurationError, match=f"database 'default' is {connection.vendor}"):
        engine_for("default")


@pytest.mark.parametrize("value", ["soon", 0.5, None, True])
def test_an_unusable_lease_setting_is_an_error(settings, value):
    settings.JOBS_LEASE_SECONDS = value
    errors = check_settings()
    assert [error.id for error in errors] == ["jobs.E004"]
    assert f"JOBS_LEASE_SECONDS is {value!r}" in errors[0].msg


@pytest.mark.parametrize("value", ["10s", 0, 0.5, 99_999, True, float("nan")])
def test_an_unusable_network_timeout_is_an_error(settings, value):
    settings.JOBS_NETWORK_TIMEOUT = value
    errors = check_settings()
    assert [error.id for error in errors] == ["jobs.E012"]
    assert f"JOBS_NETWORK_TIMEOUT is {value!r}" in errors[0].msg


@pytest.mark.parametrize("value", [None, 1, 10, 2.5, 3600])
def test_a_network_timeout_in_range_or_none_is_fine(settings, value):
    settings.JOBS_NETWORK_TIMEOUT = value
    assert check_settings() == []


def test_an_unusable_metrics_token_fails_the_check_without_showing_it(settings):
    settings.JOBS_METRICS_TOKEN = "two words"
    (error,) = check_settings()
    assert error.id == "jobs.E009"
    assert "JOBS_METRICS_TOKEN must be a string" in error.msg
    assert "two words" not in error.msg


def test_the_tasks_backends_path_before_0_2_is_named_with_where_it_moved(settings):
    settings.TASKS = {"default": {"BACKEND": "jobs.backends.tasks.DatabaseBackend"}}
    (error,) = check_tasks_backend()
    assert error.id == "jobs.E011"
    assert "moved in 0.2" in error.msg
    assert "jobs.contrib.tasks.backend.DatabaseBackend" in error.hint
    assert "'jobs.contrib.tasks' to INSTALLED_APPS" in error.hint


def test_the_tasks_backend_without_its_app_is_an_error():
    with modify_settings(INSTALLED_APPS={"remove": ["jobs.contrib.tasks"]}):
        (error,) = check_tasks_backend()
    assert error.id == "jobs.E011"
    assert "'jobs.contrib.tasks' is not in INSTALLED_APPS" in error.msg


def test_the_tasks_backend_with_its_app_passes():
    assert check_tasks_backend() == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"JOBS_TRANSACTION_POOLING": True},
            "JOBS_TRANSACTION_POOLING is on and JOBS_LISTEN is True: LISTEN does not work "
            "through a transaction pooler",
        ),
        ({"JOBS_TRANSACTION_POOLING": "yes"}, "JOBS_TRANSACTION_POOLING is 'yes'; it must be"),
        ({"JOBS_LISTEN": "direct"}, "JOBS_LISTEN is 'direct', which is not in DATABASES"),
        ({"JOBS_LISTEN": 1.5}, "JOBS_LISTEN is 1.5; it must be True, False or a DATABASES alias"),
    ],
)
def test_pooling_settings_that_would_leave_workers_deaf_are_check_errors(
    settings, changes, message
):
    for name, value in changes.items():
        setattr(settings, name, value)
    (error,) = [error for error in check_settings() if error.id == "jobs.E019"]
    assert message in error.msg


def test_a_direct_alias_for_listen_behind_a_pooler_passes(settings):
    settings.JOBS_TRANSACTION_POOLING = True
    settings.JOBS_LISTEN = "default" if connection.vendor == "postgresql" else False
    assert not [error for error in check_settings() if error.id == "jobs.E019"]
