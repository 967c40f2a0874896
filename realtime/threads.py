"""A daemon thread whose end can be awaited from the main thread while Ctrl-C may arrive.

Why not ``threading.Thread.join``: on CPython 3.11 a ``KeyboardInterrupt`` raised inside
``join`` (SIGINT or our SIGTERM handler, both run in the main thread) releases the running
thread's internal lock and marks it stopped (the bpo-45274 handling in
``Thread._wait_for_tstate_lock``). From then on ``is_alive()`` is False and every later
``join`` returns at once, so shutdown stops waiting for threads that are still scoring. At
interpreter exit such a daemon thread is killed inside an OpenCV or torch call, and the
unwinding through C++ ``noexcept`` frames aborts the process ("terminate called without an
active exception", exit -6; seen in CI on Ctrl-C). An ``Event`` set as the target's last act
has no such state to corrupt: waiting on it can be interrupted and simply resumed.
"""

from __future__ import annotations

import threading
from typing import Callable


class DaemonThread:
    """Runs ``target`` in a daemon thread (a thread stuck in a driver call must not keep the
    process alive). ``join`` and ``alive`` read an event the thread sets when ``target``
    returns or raises, never the thread's own lock."""

    def __init__(self, target: Callable[[], None], name: str):
        self.name = name
        self._target = target
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def _run(self) -> None:
        try:
            self._target()
        finally:
            self._ended.set()  # after this only the threading module's own epilogue runs

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s (None: forever). True when ``target`` has ended or the
        thread never started."""
        return not self._started or self._ended.wait(timeout)

    @property
    def started(self) -> bool:
        return self._started

    @property
    def alive(self) -> bool:
        """Started and ``target`` not yet ended."""
        return self._started and not self._ended.is_set()
