"""ui.tabs without a browser: a tab's visit costs a record and nothing else; own sources run as
session streams on the process's shared engine, capped (the refusal names the cap), closed on
unload, when their tab goes quiet and after they finish; records are bounded; and opening and
closing sessions in a loop leaves memory and threads where they were."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engines.torch_backend import TorchBackend
from realtime.pipeline import PipelineSettings
from realtime.sources import ArraySource, VideoFileSource
from realtime.streams import StreamState
from realtime.streamset import StreamSet
from ui.tabs import SessionLimits, Tabs
from ui.views import StreamView
from ui.webcam import BrowserWebcamSource


def _wait(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _quiet_source() -> BrowserWebcamSource:
    """A live source that costs nothing while it runs: a webcam nobody pushes frames to."""
    return BrowserWebcamSource(read_timeout_s=60.0)


@pytest.fixture()
def make_tabs(ui_model_path):
    """Tabs over a StreamSet with one process stream (a short clip in memory), closed after."""
    made = []

    def make(**limits) -> Tabs:
        streamset = StreamSet(TorchBackend.from_checkpoint(ui_model_path), PipelineSettings(join_timeout_s=5.0))
        process = streamset.add("door", ArraySource([np.zeros((120, 160, 3), np.uint8)] * 30))
        streamset.start()
        tabs = Tabs(streamset, (StreamView(process),), SessionLimits(**limits))
        made.append(tabs)
        return tabs

    yield make
    for tabs in made:
        tabs.close()
        assert tabs.streamset.close() == ()
        assert tabs.unjoined_threads == ()


def test_visits_cost_a_record_and_nothing_else(make_tabs):
    tabs = make_tabs(max_tabs=5)
    threads = threading.active_count()
    for n in range(40):
        state = tabs.visit(f"tab{n}")
        assert state.watching == "door" and state.own is None
    counts = tabs.counts()
    assert counts["tabs"] == 5, "records are bounded by max_tabs"
    assert counts["session_streams"] == 0 and len(tabs.streamset.streams) == 1
    assert threading.active_count() <= threads


def test_own_sources_are_capped_and_the_refusal_names_the_cap(make_tabs):
    tabs = make_tabs(max_sessions=2)
    first, second = tabs.start_own("a", _quiet_source()), tabs.start_own("b", _quiet_source())
    assert first.own is not None and first.watching == first.own.name and first.note is None
    assert second.own is not None and len(tabs.streamset.streams) == 3  # one engine: its clients
    refused = tabs.start_own("c", _quiet_source())
    assert refused.own is None and refused.watching == "door"
    assert refused.note.startswith("refused: 2 of 2 own-source sessions are in use (--max-sessions 2)")
    replaced = tabs.start_own("a", _quiet_source())  # a tab's new source replaces its own: no refusal
    assert replaced.own is not None and replaced.own.name != first.own.name
    assert _wait(lambda: first.own.stream.done) and first.own.closed
    assert tabs.view(first.own.token) is None and tabs.view(replaced.own.token) is replaced.own
    frame = np.zeros((120, 160, 3), np.uint8)
    assert tabs.push_webcam("d", frame).note == refused.note  # a webcam is refused as well
    assert tabs.push_webcam("d", frame) is None  # ... once, not again for every frame
    assert tabs.counts()["sessions_refused"] == 2
    tabs.close_tab("b")  # unload: its stream closes and frees the slot
    assert second.own.stream.done and tabs.view(second.own.token) is None
    third = tabs.start_own("c", _quiet_source())
    assert third.own is not None and third.note is None
    assert tabs.counts()["session_streams"] == 2 and tabs.counts()["sessions_refused"] == 2


def test_a_tab_watches_process_streams_and_its_own_only(make_tabs):
    tabs = make_tabs()
    mine = tabs.start_own("a", _quiet_source())
    theirs = tabs.start_own("b", _quiet_source())
    assert tabs.watch("a", theirs.own.name).watching == mine.own.name  # not another tab's source
    assert tabs.watch("a", "door").watching == "door"
    assert [v.name for v in tabs.views_of(tabs.visit("a"))] == ["door", mine.own.name]
    assert tabs.stop_own("a").watching == "door" and mine.own.stream.done


def test_quiet_tabs_and_finished_sessions_are_reaped(make_tabs):
    tabs = make_tabs(max_sessions=3, idle_s=1.0, reap_every_s=0.1).start()
    quiet = tabs.start_own("quiet", _quiet_source())
    busy = tabs.start_own("busy", _quiet_source())
    done = tabs.start_own("done", ArraySource([np.zeros((120, 160, 3), np.uint8)] * 30))
    deadline = time.monotonic() + 4.0  # the busy tab ticks, as an open tab does every second
    while time.monotonic() < deadline:
        tabs.visit("busy")
        tabs.visit("done")
        time.sleep(0.2)
    assert quiet.own.stream.done and quiet.own.closed, "a tab that gave no sign kept its stream"
    assert done.own.stream.status().state is StreamState.ENDED and done.own.closed, \
        "a finished session kept its slot"
    assert not busy.own.stream.done and tabs.visit("busy").own is busy.own
    note = tabs.visit("quiet").note
    assert "was closed: this tab gave no sign for" in note and "--session-idle-s 1" in note
    assert tabs.visit("done").note is None and tabs.visit("done").own is None
    assert tabs.counts()["session_streams"] == 1


def test_frame_requests_keep_a_session_alive(make_tabs):
    tabs = make_tabs(idle_s=1.0)
    state = tabs.start_own("a", _quiet_source())
    time.sleep(1.2)
    state.own.last_request = time.monotonic()  # what /live/{token}.jpg does
    assert tabs.reap() == 0 and not state.own.stream.done
    time.sleep(1.2)
    assert tabs.reap() == 1 and state.own.stream.done


def test_webcam_frames_start_a_session_and_closing_it_does_not_wait_for_a_frame(make_tabs):
    tabs = make_tabs()
    rng = np.random.default_rng(0)
    started = tabs.push_webcam("a", rng.integers(0, 255, (240, 320, 3), np.uint8))
    assert started is not None and started.own.stream.source.description == "browser webcam"
    for _ in range(30):
        assert tabs.push_webcam("a", rng.integers(0, 255, (240, 320, 3), np.uint8)) is None
        time.sleep(0.02)
    assert _wait(lambda: started.own.stream.frames_captured > 5)
    began = time.monotonic()
    tabs.close_tab("a")
    assert started.own.stream.done and time.monotonic() - began < 5.0


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.slow
def test_opening_and_closing_sessions_leaves_memory_and_threads_where_they_were(make_tabs, gesture_clip):
    """30 tabs, one after another, each scoring a clip of its own until its first prediction,
    then closed (as a tab's unload does). Resident memory after warm-up stays within 50 MB
    (a per-session engine, or a leak of a frame ring per session, would grow it by far more)
    and the thread count comes back to where it was."""
    tabs = make_tabs(max_sessions=1)

    def cycle(n: int) -> None:
        state = tabs.start_own(f"tab{n}", VideoFileSource(gesture_clip))
        assert state.own is not None, state.note
        assert state.own.stream.next_prediction(timeout=60) is not None, state.own.status()
        state.own.frame_jpeg(0, timeout=5)  # the live view was watched: an encoded frame too
        tabs.close_tab(f"tab{n}")

    for n in range(5):  # warm-up: the engine's workers, allocator pools, OpenCV's decoder
        cycle(n)
    gc.collect()
    threads, rss = threading.active_count(), _rss_mb()
    for n in range(5, 35):
        cycle(n)
    gc.collect()
    growth = _rss_mb() - rss
    print(f"resident memory {rss:.0f} MB after 5 warm-up sessions, {growth:+.1f} MB after 30 more; "
          f"threads {threads} -> {threading.active_count()}")
    assert growth < 50, f"resident memory grew by {growth:.0f} MB over 30 sessions"
    assert _wait(lambda: threading.active_count() <= threads, 10), threading.enumerate()
    counts = tabs.counts()
    assert counts["session_streams"] == 0 and counts["sessions_closed"] == 35 and counts["tabs"] == 0
    assert len(tabs.streamset.streams) == 1
