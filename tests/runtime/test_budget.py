"""The connection budget: refused at start, with the arithmetic, when the server cannot pay it."""

import pytest
from django.db import connection

from jobs.errors import ConfigurationError
from jobs.runtime.budget import ConnectionBudget, check_connection_budget
from tests.conftest import manage, needs_postgresql

pytestmark = pytest.mark.django_db


def test_each_process_holds_its_threads_a_claimer_a_lease_keeper_and_a_listener():
    budget = ConnectionBudget(processes=2, threads=8, listening=True, supervised=True)
    assert (budget.per_process, budget.total) == (11, 23)
    assert budget.explain() == (
        "23 connection(s): 2 process(es) x (8 thread(s) + a claimer, a lease keeper, "
        "a listener) + 1 for the supervisor"
    )


@needs_postgresql("its max_connections limit")
def test_more_connections_than_the_server_allows_is_refused_with_the_numbers():
    budget = ConnectionBudget(processes=4, threads=1000, listening=True, supervised=True)
    with pytest.raises(ConfigurationError, match=r"needs 4013 connection\(s\).*max_connections"):
        check_connection_budget(budget, "default")


@needs_postgresql("its max_connections limit")
def test_a_budget_within_the_limit_is_accepted():
    check_connection_budget(
        ConnectionBudget(processes=1, threads=4, listening=True, supervised=False), "default"
    )


def test_a_connection_pool_smaller_than_a_process_needs_is_refused(monkeypatch):
    options = {**connection.settings_dict.get("OPTIONS", {}), "pool": {"max_size": 4}}
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    budget = ConnectionBudget(processes=1, threads=8, listening=False, supervised=False)
    with pytest.raises(ConfigurationError, match="connection pool holds at most 4"):
        check_connection_budget(budget, "default")


@needs_postgresql("its max_connections limit")
@pytest.mark.django_db(transaction=True)
def test_runjobs_refuses_to_start_past_the_budget():
    result = manage("runjobs", "--processes", "3", "--threads", "5000")
    assert result.returncode == 1
    assert "CommandError: this worker needs 15010 connection(s)" in result.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--threads", "0"], "'0' is not a whole number of threads greater than 0"),
        (["--processes", "two"], "'two' is not a whole number of processes greater than 0"),
    ],
)
def test_bad_concurrency_options_fail_with_one_clear_line(args, fragment):
    result = manage("runjobs", "--burst", *args)
    assert result.returncode == 2
    assert fragment in result.stderr
