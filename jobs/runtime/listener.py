"""The thread that lets an idle worker sleep until the database says there is work.

It holds one connection of its own, LISTENing (see `jobs.db.postgresql`), and calls
`on_wake` with the hints (queue, job model: `jobs.db.wakeup`) of the wake-ups that name a
queue the worker serves, from this thread: the callee must hand them over thread-safely. A
request for the running jobs' stacks (`STACK_REQUEST`) calls `on_stack_request` instead. A
notification is only a hint: the worker then claims through the usual statement, so a forged
or stale one costs one claim. After an outage it wakes the worker once for every queue and
model, because notifications sent meanwhile are lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from django.db import connections

from jobs.db import engine_for
from jobs.db.outage import CONNECTION_ERRORS, Outage
from jobs.db.wakeup import ANY_QUEUE, STACK_REQUEST, Hint, read_payload

logger = logging.getLogger(__name__)

# How long one wait for notifications lasts: how soon the thread notices it should stop.
LISTEN_WAIT = 0.5


class Listener:
    """Use as a context manager around a worker's serving loop."""

    def __init__(
        self,
        *,
        using: str,
        queues: Sequence[str] | None,
        on_wake: Callable[[list[Hint]], None],
        on_stack_request: Callable[[], None] | None = None,
    ) -> None:
        self._using = using
        self._on_stack_request = on_stack_request
        self._queues = None if queues is None else {*queues, ANY_QUEUE}
        self._on_wake = on_wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobs-listener", daemon=True)

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        outage = Outage("listening for new jobs")
        engine = engine_for(self._using)
        try:
            while not self._stop.is_set():
                try:
                    payloads = engine.notifications(LISTEN_WAIT)
                except CONNECTION_ERRORS as exc:
                    self._stop.wait(outage.failed(exc))
                    continue
                if outage.ongoing:
                    self._on_wake([(ANY_QUEUE, None)])
                outage.succeeded()
                if STACK_REQUEST in payloads and self._on_stack_request is not None:
                    self._on_stack_request()
                hints = [read_payload(text) for text in payloads if text != STACK_REQUEST]
                if served := [h for h in hints if self._queues is None or h[0] in self._queues]:
                    self._on_wake(served)
        finally:
            connections.close_all()
