"""How long a worker waits on a database that has gone silent.

A cut network does not close a TCP connection: without a bound, a worker blocked in a
socket read waits for the operating system's defaults (two hours of keepalive idleness on
Linux, or about 15 minutes of retransmissions), reports no outage and cannot act on SIGTERM.
So a worker's PostgreSQL connections carry libpq's TCP settings: keepalive probes on an
idle connection, and `tcp_user_timeout` for data sent and never acknowledged. Together they
turn a silent cut into a connection error within about `JOBS_NETWORK_TIMEOUT` seconds, which
the worker reports and waits out like any outage; `connect_timeout` bounds a new connection
the same way.

None of the worker's own statements waits for a row lock (claims, renewals and rescue skip
locked rows), so no statement timeout is set: it would apply to the jobs' own queries on
the same connections too.

The server needs the same bound for the other direction. A worker cut off between two
statements of a transaction (a claim and its COMMIT) leaves its server session idle in that
transaction, waiting for a client it will never hear from again, with the transaction's
locks held: the rows it claimed or finished, and a limited model's claim lock, which every
other worker's claim of that model would queue behind. The worker's claiming session (whose
transactions are all the framework's, each a few statements long) therefore sets
`server_settings()`: the server ends a session idle in a transaction after the timeout, and
probes an idle connection as the client does, so the locks of a vanished worker are let go
within about `JOBS_NETWORK_TIMEOUT` seconds instead of the server's two hours of keepalive.
"""

from __future__ import annotations

from django.db import connections

# libpq's keywords, and what each becomes for a timeout of `seconds`: the first keepalive
# probe after a third of it, then two more a third apart; data unacknowledged, or a
# connection not made, for all of it.
KEEPALIVE_PROBES = 3


def network_settings(seconds: float) -> dict[str, int]:
    """libpq connection keywords that detect a silent connection in about `seconds`."""
    step = max(1, round(seconds / KEEPALIVE_PROBES))
    return {
        "keepalives": 1,
        "keepalives_idle": step,
        "keepalives_interval": step,
        "keepalives_count": KEEPALIVE_PROBES - 1,
        "tcp_user_timeout": max(1, round(seconds * 1000)),
        "connect_timeout": max(2, round(seconds)),  # libpq takes less than 2 as 2
    }


def bound_silence(using: str, seconds: float | None) -> dict[str, int]:
    """Give this process's connections to `using` the network bounds (PostgreSQL only),
    without overriding what the project's `OPTIONS` already say. Returns the keywords
    added. The calling thread's connection, if open and idle, is closed so that it reopens
    with them; other threads' open connections keep their settings until they reopen."""
    connection = connections[using]
    if seconds is None or connection.vendor != "postgresql":
        return {}
    options = connections.settings[using].setdefault("OPTIONS", {})
    added = {k: v for k, v in network_settings(seconds).items() if k not in options}
    options.update(added)
    if added and not connection.in_atomic_block:
        connection.close()
    return added


def server_settings(seconds: float) -> str:
    """`SET` statements bounding, on the server's side, how long a session of the worker's
    own may outlive a silent client (see the module's docstring)."""
    client = network_settings(seconds)
    return (
        f"SET idle_in_transaction_session_timeout = {client['tcp_user_timeout']};"
        f" SET tcp_keepalives_idle = {client['keepalives_idle']};"
        f" SET tcp_keepalives_interval = {client['keepalives_interval']};"
        f" SET tcp_keepalives_count = {client['keepalives_count']};"
        f" SET tcp_user_timeout = {client['tcp_user_timeout']}"
    )
