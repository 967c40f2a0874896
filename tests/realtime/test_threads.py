"""DaemonThread: Ctrl-C during a join must not make a running thread look finished."""

import os
import signal
import threading
import time

import pytest

from realtime.threads import DaemonThread


def _interrupt_join(join) -> None:
    """Call ``join`` in the main thread and deliver SIGINT while it waits."""
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            join()
            time.sleep(5)  # the interrupt lands here if join returned early
    finally:
        timer.cancel()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_an_interrupted_join_leaves_the_thread_alive_and_joinable():
    release = threading.Event()
    worker = DaemonThread(lambda: release.wait(10), "worker")
    worker.start()
    _interrupt_join(lambda: worker.join(10))
    assert worker.alive  # still running: a later join must still wait for it
    assert not worker.join(0.05)
    release.set()
    assert worker.join(5) and not worker.alive


def test_a_thread_that_never_started_counts_as_joined():
    idle = DaemonThread(lambda: None, "idle")
    assert idle.join(0) and not idle.alive and not idle.started
