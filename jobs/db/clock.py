"""Reading the database server's clock: the one clock every worker on every host shares."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connections

# What each database says the time is, as precisely as it can. SQLite has no server: its
# clock is the host's own, so there is nothing to ask (see `reads_server_clock`).
SERVER_TIME = {
    "postgresql": "SELECT statement_timestamp()",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
}


def reads_server_clock(using: str) -> bool:
    """Whether database `using` has a clock of its own, apart from this host's."""
    return connections[using].vendor in SERVER_TIME


def server_time(using: str) -> datetime:
    """The database server's time now, timezone-aware (UTC). Only where `reads_server_clock`."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(SERVER_TIME[connection.vendor])
        (value,) = cursor.fetchone()
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
