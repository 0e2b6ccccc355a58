"""Database-specific claiming. Everything SQL the ORM cannot say lives in this package."""

from django.db import connections

from jobs.db.base import Backend
from jobs.db.postgresql import PostgreSQLBackend
from jobs.db.sqlite import SQLiteBackend
from jobs.errors import ConfigurationError

BACKENDS: dict[str, type[Backend]] = {
    "postgresql": PostgreSQLBackend,
    "sqlite": SQLiteBackend,
}


def backend_for(using: str) -> Backend:
    """This thread's backend for database alias `using`.

    One per connection (so per thread), kept on the connection so that the statements it
    has built are built once. A ConfigurationError names the supported databases.
    """
    connection = connections[using]
    try:
        backend_class = BACKENDS[connection.vendor]
    except KeyError:
        raise ConfigurationError(
            f"database {using!r} is {connection.vendor}; jobs runs on "
            f"{' or '.join(sorted(BACKENDS))}"
        ) from None
    if type(backend := getattr(connection, "_jobs_backend", None)) is backend_class:
        return backend
    connection._jobs_backend = backend_class(connection)
    return connection._jobs_backend
