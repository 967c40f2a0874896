"""Many streams in one process: equal to each stream alone (batched or not), a stalled or
failed stream never stops the others, reconnect with backoff and fresh windows, the retry
policy, and the source list a command line names."""

from __future__ import annotations

import itertools
import random
import threading
import time

import cv2
import numpy as np
import pytest

from engines.torch_backend import TorchBackend
from realtime.batching import BatchSettings
from realtime.capture import CaptureSettings
from realtime.errors import PipelineError
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.sources import ArraySource, ImageFolderSource, Source, SourceSettings, StreamUrlSource, VideoFileSource
from realtime.streams import RetryPolicy, StreamState
from realtime.streamset import StreamSet, parse_spec, source_specs
from twostream.errors import SourceDisconnected, SourceError

FAST_RETRY = RetryPolicy(initial_s=0.01, max_s=0.02)
STREAM_THREADS = {"capture", "flow", "towers", "head"}


class FlakyCamera(Source):
    """A live camera (it delivers at its own rate, 25 fps) that plays ``runs[i]`` frames on
    its i-th connection, then drops (SourceDisconnected); after the last run it ends. Each
    reopen is refused ``refusals`` times first."""

    live, paced, fps = True, False, 25.0

    def __init__(self, frames: np.ndarray, runs: list[int], refusals: int = 0):
        self.frames, self.runs, self.refusals = frames, runs, refusals
        self.connections = 0
        self.refused = 0
        self._left = 0
        self._shown = 0

    @property
    def description(self) -> str:
        return "flaky camera"

    def _open(self) -> None:
        if self.connections and self.refused < self.refusals * self.connections:
            self.refused += 1
            raise SourceError("cannot open flaky camera: connection refused")
        self._left = self.runs[self.connections]
        self.connections += 1

    def read(self):
        time.sleep(1.0 / self.fps)
        if self._left == 0:
            if self.connections == len(self.runs):
                return None
            raise SourceDisconnected("flaky camera stopped delivering frames")
        self._left -= 1
        self._shown += 1
        return self.frames[(self._shown - 1) % len(self.frames)], None


class StuckCamera(Source):
    """A live camera whose read blocks (a hung driver) after ``before_stall`` frames, until
    ``release`` is set; then it ends."""

    live, paced, fps = True, False, 25.0

    def __init__(self, frames: np.ndarray, before_stall: int):
        self.frames, self.before_stall = frames, before_stall
        self.stalled, self.release = threading.Event(), threading.Event()
        self._read = 0

    @property
    def description(self) -> str:
        return "stuck camera"

    def _open(self) -> None:
        pass

    def read(self):
        if self._read == self.before_stall:
            self.stalled.set()
            self.release.wait(120)
            return None
        time.sleep(1.0 / self.fps)
        self._read += 1
        return self.frames[self._read % len(self.frames)], None


@pytest.fixture(scope="module")
def clips(make_stream):
    return [make_stream(40, seed=seed)[0] for seed in (11, 12, 13)]


def run_alone(model, frames) -> tuple:
    with Pipeline(ArraySource(frames), TorchBackend(model)) as pipeline:
        assert pipeline.wait(timeout=120)
    return pipeline.history()


def leftover_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name in STREAM_THREADS or t.name.startswith(("stream ", "engine-"))]


@pytest.mark.parametrize("batch", [BatchSettings(max_batch=8, max_wait_ms=50), BatchSettings(max_batch=1)],
                         ids=["batched", "unbatched"])
def test_streams_in_one_process_equal_each_stream_alone(random_model, clips, batch):
    alone = [run_alone(random_model, frames) for frames in clips]
    with StreamSet(TorchBackend(random_model), batch=batch) as streams:
        for i, frames in enumerate(clips):
            streams.add(f"s{i}", ArraySource(frames))
        assert streams.wait(timeout=180)
        together = [stream.history() for stream in streams.streams]
        batching = streams.stats()
    assert [s.status().state for s in streams.streams] == [StreamState.ENDED] * 3
    for mine, reference in zip(together, alone):
        assert [p.index for p in mine] == [p.index for p in reference] == list(range(22, 40))
        assert [p.label for p in mine] == [p.label for p in reference]
        for a, b in zip(mine, reference):
            np.testing.assert_allclose(a.logits, b.logits, rtol=1e-4, atol=1e-4)
    largest = max(part.max_batch for part in batching.parts)
    if batch.max_batch == 1:
        assert largest == 1
    else:
        assert largest > 1, batching  # three streams running together do get batched
    assert not leftover_threads()


def test_a_stalled_stream_does_not_stop_the_others(random_model, clips):
    stuck = StuckCamera(clips[0], before_stall=10)
    with StreamSet(TorchBackend(random_model)) as streams:
        streams.add("stuck", stuck)
        other = streams.add("other", ArraySource(itertools.cycle(clips[1]), live=True, fps=25))
        assert stuck.stalled.wait(30)
        first = other.next_prediction(timeout=30)
        assert first is not None
        later = other.next_prediction(after_index=first.index + 25, timeout=30)  # a second of frames on
        assert later is not None, "the other stream stopped while one stalled"
        assert streams.stream("stuck").status().state is StreamState.LIVE  # hung, not failed
        assert streams.stream("stuck").frames_captured == 10
        stuck.release.set()
    assert not leftover_threads()


def test_streams_that_fail_for_good_do_not_stop_the_others(random_model, clips, tmp_path):
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(20_000))
    statuses = []
    with StreamSet(TorchBackend(random_model), retry=FAST_RETRY, on_status=statuses.append) as streams:
        streams.add("file", VideoFileSource(garbage))
        streams.add("url", StreamUrlSource("rtsp://127.0.0.1:1/nope", SourceSettings(open_timeout_s=2)))
        good = streams.add("good", ArraySource(clips[0]))
        assert streams.wait(timeout=120)
    for name, message in (("file", "cannot open video file"), ("url", "cannot open stream 'rtsp://127.0.0.1:1/nope'")):
        status = streams.stream(name).status()
        assert status.state is StreamState.FAILED and status.reconnects == 0
        assert status.error.startswith(message) and "\n" not in status.error
        # A bad URL on its first open is bad input: reported, never retried.
        assert [s.state for s in statuses if s.name == name] == [StreamState.CONNECTING, StreamState.FAILED]
    assert good.status().state is StreamState.ENDED and len(good.history()) == 40 - 22
    assert streams.done and not streams.all_failed


def test_every_stream_failing_is_said_so(random_model, tmp_path):
    with StreamSet(TorchBackend(random_model)) as streams:
        streams.add("a", VideoFileSource(tmp_path / "missing.mp4"))
        streams.add("b", ImageFolderSource(tmp_path / "nowhere"))
        assert streams.wait(timeout=60)
    assert streams.all_failed


def test_a_dropped_camera_reconnects_with_fresh_windows_and_continuing_indices(random_model, clips):
    camera = FlakyCamera(clips[0], runs=[50, 50], refusals=2)  # 50: a window even if some frames drop
    statuses = []
    with StreamSet(TorchBackend(random_model), retry=FAST_RETRY, on_status=statuses.append) as streams:
        stream = streams.add("cam", camera)
        assert streams.wait(timeout=120)
    assert [(s.state, s.reconnects) for s in statuses] == [
        (StreamState.CONNECTING, 0), (StreamState.LIVE, 0), (StreamState.RECONNECTING, 0),
        (StreamState.LIVE, 1), (StreamState.ENDED, 1)]
    assert statuses[2].error == "flaky camera stopped delivering frames"
    assert camera.refused == 2 and camera.connections == 2
    assert stream.connection_starts == (0, 50) and stream.frames_captured == 100
    history = stream.history()
    before = [p for p in history if p.index < 50]
    after = [p for p in history if p.index >= 50]
    assert before and after, [p.index for p in history]
    # No window spans the gap: the first one after it starts at the reconnect's first frame.
    assert after[0].window_start >= 50 and after[0].index >= 50 + 22
    assert all(p.window_start >= 50 for p in after)
    stats = stream.stats()
    assert stats.frames == 100 and stats.predictions == len(history)
    assert history[-1].dropped == stats.dropped  # one running count across connections


def test_max_frames_counts_over_every_connection(random_model, clips):
    settings = PipelineSettings(capture=CaptureSettings(max_frames=50))
    with StreamSet(TorchBackend(random_model), settings, retry=FAST_RETRY) as streams:
        stream = streams.add("cam", FlakyCamera(clips[0], runs=[30, 100]))
        assert streams.wait(timeout=120)
    assert stream.status().state is StreamState.ENDED and stream.status().reconnects == 1
    assert stream.frames_captured == 50 and stream.connection_starts == (0, 30)


def test_a_camera_that_never_comes_back_fails_after_max_retries(random_model, clips):
    camera = FlakyCamera(clips[0], runs=[30, 30], refusals=1000)
    retry = RetryPolicy(initial_s=0.01, max_s=0.02, max_retries=3)
    statuses = []
    with StreamSet(TorchBackend(random_model), retry=retry, on_status=statuses.append) as streams:
        stream = streams.add("cam", camera)
        assert streams.wait(timeout=120)
    assert [s.state for s in statuses] == [StreamState.CONNECTING, StreamState.LIVE,
                                           StreamState.RECONNECTING, StreamState.FAILED]
    assert camera.refused == 3
    assert stream.status().error == ("gave up after 3 reconnect attempts: "
                                     "cannot open flaky camera: connection refused")


def test_a_file_that_breaks_mid_stream_fails_without_retrying(random_model, clips, tmp_path):
    for i, bgr in enumerate(clips[0][:30]):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), bgr)
    (tmp_path / "025.png").write_bytes(b"truncated")
    with StreamSet(TorchBackend(random_model), retry=FAST_RETRY) as streams:
        stream = streams.add("folder", ImageFolderSource(tmp_path))
        assert streams.wait(timeout=120)
    status = stream.status()
    assert status.state is StreamState.FAILED and status.reconnects == 0 and "025.png" in status.error


def test_stop_joins_every_thread_of_endless_streams(random_model, clips):
    streams = StreamSet(TorchBackend(random_model)).start()
    names = []
    for i in range(2):
        names.append(streams.add(f"live{i}", ArraySource(itertools.cycle(clips[i]), live=True, fps=25)).name)
    with pytest.raises(PipelineError, match="already running"):
        streams.add("live0", ArraySource(clips[0]))
    assert [s.name for s in streams.streams] == names
    for stream in streams.streams:
        assert stream.next_prediction(timeout=30) is not None
        assert stream.latest_frame.index >= stream.latest.index
    assert streams.remove("live1") == () and [s.name for s in streams.streams] == ["live0"]
    assert streams.close() == ()
    assert streams.stream("live0").status().state is StreamState.ENDED
    assert not leftover_threads()


# ---- the retry policy ----------------------------------------------------------------------
def test_retry_delays_grow_to_the_cap_with_jitter_below():
    rng = random.Random(7)
    policy = RetryPolicy()
    delays = [policy.delay(n, rng) for n in range(200)]
    assert 0.375 <= delays[0] <= 0.5 and 0.75 <= delays[1] <= 1.0
    assert all(0.75 <= d <= 1.0 for d in delays[1:])  # capped at max_s, jitter takes up to 25% off
    assert len(set(delays)) == len(delays)  # jittered, not in step
    again = random.Random(7)
    assert [policy.delay(n, again) for n in range(200)] == delays  # a seeded RNG repeats them
    exact = RetryPolicy(initial_s=0.5, factor=2.0, max_s=8.0, jitter=0.0)
    assert [exact.delay(n, rng) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert exact.delay(10**9, rng) == 8.0  # no overflow however long it retries
    assert RetryPolicy(factor=1.0, jitter=0.0).delay(50, rng) == 0.5


def test_retry_limits_and_bad_policies():
    assert not RetryPolicy().gives_up(10**6)
    assert [RetryPolicy(max_retries=2).gives_up(n) for n in range(4)] == [False, False, True, True]
    assert RetryPolicy(max_retries=0).gives_up(0)
    for bad in (dict(initial_s=0), dict(initial_s=2.0, max_s=1.0), dict(factor=0.5), dict(jitter=1.0),
                dict(max_retries=-1)):
        with pytest.raises(PipelineError):
            RetryPolicy(**bad)


# ---- source lists --------------------------------------------------------------------------
def test_source_specs_name_streams_by_name_or_index(tmp_path):
    listing = tmp_path / "cams.txt"
    listing.write_text("# my cameras\n\nfront=rtsp://10.0.0.5/cam?user=a&x=1\n  clip=1.mp4 \nrtsp://h/x?a=b\n")
    specs = source_specs(["demo", "door = 0"], listing)
    assert [(s.name, s.spec, s.named) for s in specs] == [
        ("0", "demo", False), ("door", "0", True), ("front", "rtsp://10.0.0.5/cam?user=a&x=1", True),
        ("clip", "1.mp4", True), ("4", "rtsp://h/x?a=b", False)]
    assert specs[2].where == f"{listing}:3"
    assert parse_spec("./a=b.mp4", 0, "x").spec == "./a=b.mp4"  # a path with '=' is not a name


@pytest.mark.parametrize("sources, text, message", [
    (["a=demo", "a=0"], None, r"duplicate stream name 'a' \(--source 'a=demo' and --source 'a=0'\)"),
    (["demo"], "0=clip.mp4\n", r"duplicate stream name '0' \(--source 'demo' and .*cams.txt:1\)"),
    ([], "cam=\n", r"cams.txt:1: no source after 'cam='"),
    ([], "# nothing\n\n", "no sources in it"),
    (["=demo"], None, "empty stream name"),
])
def test_a_bad_source_list_is_one_clear_line(tmp_path, sources, text, message):
    listing = None
    if text is not None:
        listing = tmp_path / "cams.txt"
        listing.write_text(text)
    with pytest.raises(SourceError, match=message):
        source_specs(sources, listing)


def test_a_missing_source_list_is_one_clear_line(tmp_path):
    with pytest.raises(SourceError, match="--sources .*nope.txt: no such file"):
        source_specs([], tmp_path / "nope.txt")
    with pytest.raises(SourceError, match="is a folder"):
        source_specs([], tmp_path)
