"""Who is running a job: recorded on the row so an operator can find the process."""

import os
import socket
import threading


def worker_identity() -> str:
    """`host:pid:thread`, unique among live workers, readable in the admin and in `ps`."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"
