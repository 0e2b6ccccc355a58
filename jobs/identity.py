"""Who is running a job: one name per process, `host:pid`, written and read only here.

A worker process registers its `Worker` row under this name and writes the same name as
`claimed_by` on every row it claims; so does a process that calls `run()` itself (a shell, a
web request), with no `Worker` row. An operator finds a worker's jobs by that name, and the
fencing of outcomes reads `claimed_by` together with the attempt number, so a name need only
tell processes apart, not threads.

Rows claimed before 0.2 carry a thread after the pid (`host:pid:thread`);
`claimed_by_process()` matches them too. Hostnames hold no colon, so the last colon of a
name always separates the pid.
"""

from __future__ import annotations

import os
import socket

from django.db.models import Q

SEPARATOR = ":"


def process_identity(pid: int | None = None) -> str:
    """`host:pid`: names this process (its `Worker` row, and `claimed_by` of its jobs), or
    process `pid` of this host."""
    return f"{socket.gethostname()}{SEPARATOR}{pid or os.getpid()}"


def parse_identity(name: str) -> tuple[str, int]:
    """`(host, pid)` from a process name or a `claimed_by`; ValueError if it is neither."""
    host, _, rest = name.partition(SEPARATOR)
    pid = rest.split(SEPARATOR, 1)[0]
    if not host or not pid.isdigit():
        raise ValueError(f"not a worker name (host:pid): {name!r}")
    return host, int(pid)


def claimed_by_process(name: str) -> Q:
    """Rows the process `name` (`host:pid`) claimed, in today's form and the older
    `host:pid:thread`; never those of a process whose pid merely starts the same."""
    return Q(claimed_by=name) | Q(claimed_by__startswith=f"{name}{SEPARATOR}")
