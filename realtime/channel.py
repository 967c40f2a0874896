"""A bounded FIFO between two pipeline stages, with an end-of-stream mark and two policies.

    back-pressure (files): ``put`` waits while the channel is full, so nothing is dropped;
    newest wins (live):    ``put`` never waits; when full, the oldest item is discarded and
                           counted, so a slow consumer always gets the freshest frame.

Every wait takes a timeout, so no thread can block forever: callers loop and check their
stop event between attempts.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class EndOfStream(Exception):
    """The producer closed the channel and every item has been taken."""


class ChannelClosed(Exception):
    """``put`` on a channel whose producer side was already closed."""


class Channel(Generic[T]):
    """Bounded FIFO; ``drop_oldest`` picks the newest-wins policy."""

    def __init__(self, capacity: int, *, drop_oldest: bool = False):
        if capacity < 1:
            raise ValueError(f"channel capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._dropped = 0

    @property
    def dropped(self) -> int:
        """Items discarded by the newest-wins policy, and any counted with ``count_dropped``."""
        return self._dropped

    def count_dropped(self, count: int) -> None:
        """Add frames dropped before they reached this channel (the capture stage skipping to
        catch up with its source's clock), so ``dropped`` is the stream's one drop figure."""
        with self._cond:
            self._dropped += count

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, timeout: float) -> bool:
        """Add ``item``. Returns False if the channel stayed full for ``timeout`` seconds
        (back-pressure only; newest-wins never waits). Raises ChannelClosed after ``close``."""
        with self._cond:
            if self._closed:
                raise ChannelClosed("put on a closed channel")
            if len(self._items) >= self.capacity:
                if self.drop_oldest:
                    self._items.popleft()
                    self._dropped += 1
                elif not self._cond.wait_for(lambda: len(self._items) < self.capacity or self._closed,
                                             timeout):
                    return False
                elif self._closed:
                    raise ChannelClosed("channel closed while waiting to put")
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> T | None:
        """The oldest item, or None after ``timeout`` seconds with nothing to take.
        Raises EndOfStream once the channel is closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            raise EndOfStream

    def close(self) -> None:
        """No more items will come; what is queued can still be taken (drain before join)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def discard(self) -> None:
        """Drop whatever is queued (abort path: nobody will process it)."""
        with self._cond:
            self._items.clear()
            self._cond.notify_all()
