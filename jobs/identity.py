"""Who is running a job: recorded on the row so an operator can find the process."""

import os
import socket
import threading


def process_identity() -> str:
    """`host:pid`: names a worker process (its `Worker` row)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_identity() -> str:
    """`host:pid:thread`, unique among live workers, readable in the admin and in `ps`."""
    return f"{process_identity()}:{threading.current_thread().name}"
