"""Database-specific claiming. Everything SQL the ORM cannot say lives in this package."""

from django.db import connections

from jobs.backends.base import Backend
from jobs.backends.postgresql import PostgreSQLBackend
from jobs.backends.sqlite import SQLiteBackend
from jobs.errors import ConfigurationError

BACKENDS: dict[str, type[Backend]] = {
    "postgresql": PostgreSQLBackend,
    "sqlite": SQLiteBackend,
}


def backend_for(using: str) -> Backend:
    """The backend for database alias `using`, or a ConfigurationError naming what is supported."""
    connection = connections[using]
    try:
        backend_class = BACKENDS[connection.vendor]
    except KeyError:
        raise ConfigurationError(
            f"database {using!r} is {connection.vendor}; jobs runs on "
            f"{' or '.join(sorted(BACKENDS))}"
        ) from None
    return backend_class(connection)
