"""Bounded channels: back-pressure for files, newest-wins with counted drops for live sources."""

from __future__ import annotations

import threading
import time

import pytest

from realtime.channel import Channel, ChannelClosed, EndOfStream


def test_back_pressure_waits_and_times_out_instead_of_dropping():
    channel = Channel(2)
    assert channel.put(1, 0.01) and channel.put(2, 0.01)
    started = time.monotonic()
    assert channel.put(3, 0.05) is False  # full: the producer waits, then gives up this attempt
    assert time.monotonic() - started >= 0.04
    assert channel.dropped == 0 and len(channel) == 2


def test_back_pressure_put_resumes_when_the_consumer_takes():
    channel = Channel(1)
    channel.put("a", 0.01)
    threading.Timer(0.05, lambda: channel.get(1.0)).start()
    assert channel.put("b", 2.0) is True
    assert channel.get(0.1) == "b"


def test_newest_wins_drops_the_oldest_and_counts():
    channel = Channel(2, drop_oldest=True)
    for item in range(5):
        assert channel.put(item, 0.0)
    assert channel.dropped == 3
    assert [channel.get(0.01), channel.get(0.01)] == [3, 4]


def test_get_times_out_with_none_then_drains_and_ends():
    channel = Channel(3)
    assert channel.get(0.01) is None
    channel.put("x", 0.01)
    channel.close()
    assert channel.get(0.01) == "x"  # drained after close
    with pytest.raises(EndOfStream):
        channel.get(0.01)
    with pytest.raises(ChannelClosed):
        channel.put("y", 0.01)


def test_close_wakes_a_waiting_consumer():
    channel = Channel(1)
    threading.Timer(0.05, channel.close).start()
    started = time.monotonic()
    with pytest.raises(EndOfStream):
        channel.get(5.0)
    assert time.monotonic() - started < 2.0


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        Channel(0)
