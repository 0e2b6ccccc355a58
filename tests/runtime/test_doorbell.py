"""The doorbell: a wake-up that signal handlers may ring without deadlocking the loop."""

import subprocess
import sys
import textwrap

from jobs.runtime.doorbell import Doorbell
from tests.conftest import REPO

# A loop that waits and clears, flooded with signals whose handler rings: the pattern that
# hung the supervisor when its handler set a threading.Event instead.
FLOOD = textwrap.dedent(
    """
    import os, signal, sys, threading
    from jobs.runtime.doorbell import Doorbell

    bell = Doorbell()
    signal.signal(signal.SIGUSR1, lambda signum, frame: bell.ring())
    rung = 0

    def flood():
        for _ in range(1000):
            os.kill(os.getpid(), signal.SIGUSR1)

    sender = threading.Thread(target=flood)
    sender.start()
    while sender.is_alive() or not rung:
        rung += bell.wait(0.01)
        bell.clear()
    print("rung", rung > 0)
    """
)


def test_a_loop_flooded_with_signals_that_ring_never_hangs():
    done = subprocess.run(
        [sys.executable, "-c", FLOOD], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout.strip()) == (0, "rung True"), done.stderr


def test_wait_returns_when_rung_and_times_out_when_not():
    bell = Doorbell()
    assert not bell.wait(0.01)
    bell.ring()
    assert bell.wait(0.01)
    bell.clear()
    assert not bell.wait(0.01)
    bell.close()
    bell.ring()  # after close, a late ring from a given-up job thread does nothing
