"""A worker's connections detect a silent network in seconds (`jobs.db.network`)."""

import pytest
from django.db import connection, connections

from jobs.db.network import bound_silence, network_settings
from jobs.runtime.worker import WorkerLoop
from tests.conftest import needs_postgresql

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def options():
    """Leave the connection settings as they were for the tests after this one."""
    saved = dict(connections.settings["default"].get("OPTIONS", {}))
    options = connections.settings["default"].setdefault("OPTIONS", {})
    for keyword in network_settings(10):  # as a worker earlier in this process left them
        options.pop(keyword, None)
    yield options
    connections.settings["default"]["OPTIONS"] = saved
    connection.close()


def test_ten_seconds_means_three_probes_and_ten_seconds_of_unacknowledged_data():
    assert network_settings(10) == {
        "keepalives": 1,
        "keepalives_idle": 3,
        "keepalives_interval": 3,
        "keepalives_count": 2,
        "tcp_user_timeout": 10_000,
        "connect_timeout": 10,
    }
    assert network_settings(1)["keepalives_idle"] == 1


@needs_postgresql("libpq's TCP keywords")
def test_a_worker_s_connections_carry_the_bounds(options, settings):
    settings.JOBS_NETWORK_TIMEOUT = 6
    WorkerLoop()
    connection.ensure_connection()
    used = {o.keyword.decode(): o.val for o in connection.connection.pgconn.info}
    assert used[b"tcp_user_timeout".decode()] == b"6000"
    assert used["keepalives_idle"] == b"2"


@needs_postgresql("libpq's TCP keywords")
def test_the_project_s_own_options_win(options):
    options["keepalives_idle"] = 30
    added = bound_silence("default", 10)
    assert "keepalives_idle" not in added
    assert options["keepalives_idle"] == 30
    assert options["tcp_user_timeout"] == 10_000


def test_none_leaves_the_operating_system_s_defaults(options):
    assert bound_silence("default", None) == {}
    assert "tcp_user_timeout" not in options


def test_sqlite_has_no_network(options):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    assert bound_silence("default", 10) == {}
