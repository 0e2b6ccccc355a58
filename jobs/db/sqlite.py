"""SQLite: one writer at a time makes the claiming UPDATE exclusive on its own.

An UPDATE takes the database's write lock before it reads, so the inner SELECT of pending
rows and the write happen with no other writer in between; a loser's SELECT finds the rows
already running, and RETURNING tells it it got nothing. Correct with several processes, not
fast: writers queue on the busy timeout. RETURNING needs SQLite 3.35.
"""

import sqlite3

from jobs.db.base import Engine
from jobs.errors import ConfigurationError

MINIMUM_VERSION = (3, 35)


class SQLiteEngine(Engine):
    def __init__(self, connection) -> None:
        if sqlite3.sqlite_version_info < MINIMUM_VERSION:
            raise ConfigurationError(
                f"SQLite {sqlite3.sqlite_version} is too old: jobs needs 3.35 or newer (RETURNING)"
            )
        super().__init__(connection)
