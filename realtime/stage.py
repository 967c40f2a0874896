"""The thread skeleton every pipeline stage shares: loop, timeouts, error capture, shutdown.

Shutdown has two speeds, both driven by events in one shared ``Control``:
    stop  (graceful: end of file, --max-frames, Ctrl-C): only the capture stage reacts; it
          closes its output, and each stage drains its inbox, then closes its own output, so
          every captured frame is still scored before the threads are joined.
    abort (an error anywhere): every stage leaves its loop at the next poll; queued items are
          dropped. The first error is kept for the caller to re-raise.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from realtime.channel import Channel, ChannelClosed, EndOfStream
from realtime.threads import DaemonThread

In = TypeVar("In")
Out = TypeVar("Out")


class Control:
    """Events and the first error, shared by the stages of one pipeline."""

    def __init__(self, poll_s: float = 0.05):
        self.poll_s = poll_s  # how long any wait lasts before re-checking the events
        self.stop = threading.Event()
        self.abort = threading.Event()
        self._lock = threading.Lock()
        self._error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        """Record ``error`` (the first one wins) and abort every stage."""
        with self._lock:
            if self._error is None:
                self._error = error
        self.abort.set()
        self.stop.set()

    @property
    def error(self) -> BaseException | None:
        return self._error


class Stage(ABC):
    """A named thread running ``loop``; an exception in it aborts the whole pipeline."""

    def __init__(self, name: str, control: Control, outbox: Channel | None):
        self.name = name
        self.control = control
        self.outbox = outbox
        self._thread = DaemonThread(self._main, name)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """True when the thread has ended (or never started)."""
        return self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.alive

    def _main(self) -> None:
        try:
            self.loop()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through Control
            self.control.fail(exc)
        finally:
            try:
                self.finish()
            finally:
                if self.outbox is not None:
                    self.outbox.close()
                    if self.control.abort.is_set():
                        self.outbox.discard()

    @abstractmethod
    def loop(self) -> None:
        """Run until the input ends, ``stop`` (capture only) or ``abort``."""

    def finish(self) -> None:
        """Release what this stage holds; runs in the stage's own thread."""

    def emit(self, item) -> bool:
        """Put ``item`` downstream with back-pressure. False if the pipeline aborted first."""
        while not self.control.abort.is_set():
            try:
                if self.outbox.put(item, self.control.poll_s):
                    return True
            except ChannelClosed:
                return False
        return False


class ProcessingStage(Stage, Generic[In, Out]):
    """Takes items from ``inbox`` until it is closed and drained; ``process`` may return None
    (nothing to pass on) or one item for ``outbox``."""

    def __init__(self, name: str, control: Control, inbox: Channel, outbox: Channel | None):
        super().__init__(name, control, outbox)
        self.inbox = inbox

    def loop(self) -> None:
        while not self.control.abort.is_set():
            try:
                item = self.inbox.get(self.control.poll_s)
            except EndOfStream:
                return
            if item is None:
                continue  # timed out: re-check abort
            result = self.process(item)
            if result is not None and self.outbox is not None and not self.emit(result):
                return

    @abstractmethod
    def process(self, item: In) -> Out | None: ...
