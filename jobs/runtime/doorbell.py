"""What a sleeping loop waits on, safe to ring from a signal handler.

`threading.Event` is not: a handler runs on the main thread between two bytecodes, maybe
while that thread is inside `Event.wait()` or `Event.set()` holding the event's lock, and
setting the event there waits for that lock forever. (Seen: a supervisor whose two workers
exited at the same moment hung in its SIGCHLD handler.) Ringing writes a byte to a pipe,
which takes no lock; waiting is a `select()` on the other end.
"""

from __future__ import annotations

import contextlib
import os
import select


class Doorbell:
    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def ring(self) -> None:
        """Wake the waiter (now, or at its next wait). From any thread or signal handler.

        After `close()` it does nothing: a job thread the worker gave up on may still
        finish and ring.
        """
        if self._write < 0:
            return
        with contextlib.suppress(OSError):  # the pipe is full of rings already, or closed
            os.write(self._write, b"\0")

    def wait(self, timeout: float | None) -> bool:
        """Sleep until rung or `timeout` seconds pass; True if rung. Does not clear it."""
        ready, _, _ = select.select([self._read], [], [], timeout)
        return bool(ready)

    def clear(self) -> None:
        """Forget the rings so far; the loop then looks at everything it was rung for."""
        with contextlib.suppress(BlockingIOError):  # nothing (more) to read
            while os.read(self._read, 4096):
                pass

    def close(self) -> None:
        write, self._write = self._write, -1
        os.close(write)
        os.close(self._read)
