"""The connection budget: how many database connections a `runjobs` invocation holds.

Each worker process holds one connection per job thread, one for claiming (its main
thread), one for renewing leases and, on PostgreSQL with wake-ups on, one LISTENing; a
supervisor holds one more for its own `Worker` row. A worker that starts past the server's
limit fails later and in pieces (threads that cannot connect), so it is refused up front.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connections

from jobs.db import engine_for
from jobs.errors import ConfigurationError

DEFAULT_POOL_SIZE = 4  # psycopg_pool's default min_size, which Django's pool also uses as max


@dataclass(frozen=True)
class ConnectionBudget:
    processes: int
    threads: int
    listening: bool
    supervised: bool

    @property
    def per_process(self) -> int:
        return self.threads + 2 + int(self.listening)

    @property
    def total(self) -> int:
        return self.processes * self.per_process + int(self.supervised)

    def explain(self) -> str:
        others = "a claimer, a lease keeper" + (", a listener" if self.listening else "")
        supervisor = " + 1 for the supervisor" if self.supervised else ""
        return (
            f"{self.total} connection(s): {self.processes} process(es) x ({self.threads} "
            f"thread(s) + {others}){supervisor}"
        )


def check_connection_budget(budget: ConnectionBudget, using: str) -> None:
    """Raise ConfigurationError if the database cannot give `budget` its connections now."""
    pool = connections[using].settings_dict.get("OPTIONS", {}).get("pool")
    if pool:
        options = pool if isinstance(pool, dict) else {}
        size = options.get("max_size") or options.get("min_size", DEFAULT_POOL_SIZE)
        if budget.per_process > size:
            raise ConfigurationError(
                f"each worker process needs {budget.per_process} connections, but the "
                f"database's connection pool holds at most {size}: raise OPTIONS['pool']"
                "['max_size'] or lower --threads"
            )
    engine = engine_for(using)
    headroom = engine.connection_headroom()
    if headroom is None:
        return
    # The connection asking is one of ours, and will be handed over to the main thread.
    available, reason = headroom[0] + 1, headroom[1]
    if budget.total > available:
        raise ConfigurationError(
            f"this worker needs {budget.explain()}, but the database can open only "
            f"{available} more ({reason}): lower --processes or --threads, or raise the limit"
        )
