"""Database-specific claiming. Everything SQL the ORM cannot say lives in this package."""

from django.db import connections

from jobs.db.base import Engine
from jobs.db.mysql.engine import MySQLEngine
from jobs.db.postgresql import PostgreSQLEngine
from jobs.db.sqlite import SQLiteEngine
from jobs.errors import ConfigurationError

ENGINES: dict[str, type[Engine]] = {
    "mysql": MySQLEngine,  # MariaDB too
    "postgresql": PostgreSQLEngine,
    "sqlite": SQLiteEngine,
}


def engine_for(using: str) -> Engine:
    """This thread's engine for database alias `using`.

    One per connection (so per thread), kept on the connection so that the statements it
    has built are built once. A ConfigurationError names the supported databases.
    """
    connection = connections[using]
    try:
        engine_class = ENGINES[connection.vendor]
    except KeyError:
        raise ConfigurationError(
            f"database {using!r} is {connection.vendor}; jobs runs on "
            f"{' or '.join(sorted(ENGINES))}"
        ) from None
    if type(engine := getattr(connection, "_jobs_engine", None)) is engine_class:
        return engine
    connection._jobs_engine = engine_class(connection)
    return connection._jobs_engine


def close_before_fork() -> None:
    """Close every database connection of this process, connection pools included, before it
    forks: a child must not share a socket with its parent, and a pool's sockets (and its
    threads, which a child does not inherit) are the parent's. Closing a pooled connection
    only hands it back to the pool, so the pool itself is closed; the next use makes another.
    """
    connections.close_all()
    for connection in connections.all(initialized_only=True):
        pools = getattr(type(connection), "_connection_pools", {})
        if connection.alias in pools:
            connection.close_pool()
