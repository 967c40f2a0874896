"""Sources: what a --source string opens, and one clear SourceError for each way it can fail."""

from __future__ import annotations

import socket
import time

import cv2
import numpy as np
import pytest

from realtime.sources import (ArraySource, CameraSource, DemoSource, ImageFolderSource, SourceSettings,
                              StreamUrlSource, VideoFileSource, open_source, probe_url, url_address)
from twostream.errors import SourceError
from twostream.gestures import GestureStream


@pytest.mark.parametrize("spec, kind", [
    ("demo", DemoSource),
    ("0", CameraSource),
    ("12", CameraSource),
    ("rtsp://127.0.0.1:8554/cam", StreamUrlSource),
    ("rtsps://user:pw@cam.local/x", StreamUrlSource),
    ("http://127.0.0.1:8080/video.mjpg", StreamUrlSource),
    ("https://example.org/live.m3u8", StreamUrlSource),
    ("clip.mp4", VideoFileSource),
    ("file:///tmp/clip.mp4", VideoFileSource),
])
def test_spec_picks_the_source(spec, kind):
    assert type(open_source(spec)) is kind


def test_a_folder_spec_is_an_image_folder(tmp_path):
    assert type(open_source(str(tmp_path))) is ImageFolderSource


@pytest.mark.parametrize("spec, message", [
    ("", "empty source"),
    ("ftp://host/x.mp4", "unsupported URL scheme 'ftp'"),
])
def test_bad_specs_are_refused(spec, message):
    with pytest.raises(SourceError, match=message):
        open_source(spec)


def test_passwords_never_reach_messages():
    source = open_source("rtsp://admin:secret@127.0.0.1:1/x")
    assert "secret" not in source.description and "***" in source.description


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (96, 64))
    for item, _ in zip(GestureStream(1, (96, 64)), range(12)):
        writer.write(item.bgr)
    writer.release()
    return path


def _read_all(source) -> list:
    source.open()
    frames = []
    while (got := source.read()) is not None:
        frames.append(got)
    source.close()
    return frames


def test_video_file_reads_every_frame_with_its_fps(video_file):
    source = VideoFileSource(video_file)
    frames = _read_all(source)
    assert len(frames) == 12
    assert frames[0][0].shape == (64, 96, 3) and frames[0][1] is None
    assert source.fps == pytest.approx(20.0) and not source.live


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "absent.mp4", "cannot open video file '.*absent.mp4': no such file"),
    (lambda d: (d / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(20000)) and d / "garbage.mp4",
     "cannot open video file '.*garbage.mp4': not a video format FFmpeg can read"),
    (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "cannot open video file '.*empty.mp4'"),
])
def test_unusable_video_files_fail_at_open(tmp_path, make, message):
    with pytest.raises(SourceError, match=message):
        VideoFileSource(make(tmp_path)).open()


def test_image_folder_in_natural_order(tmp_path):
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    frames = _read_all(ImageFolderSource(tmp_path))
    assert [int(f[0][0, 0, 0]) for f in frames] == [1, 2, 10]


def test_image_folder_errors(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(tmp_path).open()
    (tmp_path / "bad.png").write_bytes(b"not a png")
    source = ImageFolderSource(tmp_path)
    source.open()
    with pytest.raises(SourceError, match="cannot read image"):
        source.read()


def test_absent_camera_is_a_clear_error():
    with pytest.raises(SourceError, match="cannot open camera 99"):
        CameraSource(99).open()


def test_refused_stream_url_fails_fast():
    """Refused at once, and said so: not a wait for the open timeout (30 s here) and a guess."""
    source = StreamUrlSource("rtsp://127.0.0.1:1/nope", SourceSettings(open_timeout_s=30))
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        source.open()
    assert str(info.value) == "cannot open stream 'rtsp://127.0.0.1:1/nope': connection refused by 127.0.0.1:1"
    assert time.monotonic() - started < 15  # far below the timeout, however loaded the machine


@pytest.fixture
def silent_port():
    """A port whose server never answers: its accept queue (listen backlog 0) is full of
    connections nobody accepts, so the kernel drops further SYNs, as a firewall would."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)  # the fillers' handshakes complete
    yield port
    for sock in (*fillers, server):
        sock.close()


def test_a_silent_server_is_told_from_a_refusal(silent_port):
    with pytest.raises(SourceError) as info:
        probe_url(f"rtsp://127.0.0.1:{silent_port}/cam", timeout_s=1)
    assert str(info.value) == (f"cannot open stream 'rtsp://127.0.0.1:{silent_port}/cam': no answer from "
                               f"127.0.0.1:{silent_port} within 1 s")


@pytest.mark.parametrize("url, words", [
    ("rtsp://no-such-host.invalid/cam", "cannot open stream 'rtsp://no-such-host.invalid/cam': unknown host "
                                        "no-such-host.invalid"),  # .invalid never resolves (RFC 6761)
    ("rtsp://admin:secret@127.0.0.1:1/cam", "cannot open stream 'rtsp://admin:***@127.0.0.1:1/cam': connection "
                                            "refused by 127.0.0.1:1"),
    ("rtsp://[::1]:1/cam", "connection refused by [::1]:1"),
    ("rtsp://127.0.0.1:99999/cam", "the port in it is not a number from 0 to 65535"),
    ("rtsp:///cam", "no host in it"),
])
def test_probe_says_what_happened(url, words):
    if url.startswith("rtsp://[::1]") and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    with pytest.raises(SourceError) as info:
        probe_url(url, timeout_s=2)
    assert words in str(info.value) and "secret" not in str(info.value)


@pytest.mark.parametrize("url, address", [
    ("rtsp://cam.local/x", ("cam.local", 554)),
    ("rtsps://cam.local/x", ("cam.local", 322)),
    ("rtmp://cam.local/live", ("cam.local", 1935)),
    ("http://cam.local/video.mjpg", ("cam.local", 80)),
    ("HTTPS://user:pw@cam.local/x", ("cam.local", 443)),
    ("rtsp://cam.local:8554/x", ("cam.local", 8554)),
])
def test_a_url_without_a_port_probes_its_schemes_default(url, address):
    assert url_address(url) == address


def test_a_probe_connects_and_closes_without_asking_for_anything():
    """It must not consume the stream: the server sees a connection that sends nothing."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(10)
        probe_url(f"rtsp://127.0.0.1:{server.getsockname()[1]}/cam", timeout_s=5)
        connection, _ = server.accept()
        with connection:
            connection.settimeout(10)
            assert connection.recv(1024) == b""  # closed, with not a byte sent


def test_a_url_through_an_http_proxy_is_not_probed(monkeypatch):
    """FFmpeg goes to the proxy, not the host: a refusal by the host itself would mean nothing."""
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    probe_url("http://127.0.0.1:1/video.mjpg", timeout_s=2)  # not refused: not tried
    with pytest.raises(SourceError, match="connection refused"):
        probe_url("rtsp://127.0.0.1:1/cam", timeout_s=2)  # RTSP never goes through it
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with pytest.raises(SourceError, match="connection refused"):
        probe_url("http://127.0.0.1:1/video.mjpg", timeout_s=2)


def test_a_server_that_answers_but_serves_no_stream_is_said_so():
    """The probe passes (something listens); FFmpeg then gets no stream from it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        source = StreamUrlSource(f"rtsp://127.0.0.1:{port}/cam", SourceSettings(open_timeout_s=2, read_timeout_s=2))
        with pytest.raises(SourceError, match=f"127.0.0.1:{port} answers, but no stream opened within 2 s"):
            source.open()


def test_demo_source_is_live_paced_and_carries_truth():
    source = DemoSource(seed=2, size=(80, 60), fps=25)
    source.open()
    bgr, truth = source.read()
    assert source.live and source.paced
    assert bgr.shape == (60, 80, 3)
    first = next(iter(GestureStream(2, (80, 60))))
    assert truth.label == first.label and truth.segment == first.segment == 0


def test_array_source_pairs_frames_with_truths():
    frames = [np.zeros((4, 4, 3), np.uint8)] * 3
    got = _read_all(ArraySource(frames, ["a", "b", "c"]))
    assert [t for _, t in got] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="fps"):
        ArraySource(frames, live=True)


def _read_skipping(source, skip: set[int]) -> list:
    """Read every frame but those at the positions in ``skip``, passed over with ``skip()``."""
    source.open()
    frames, position = [], 0
    while True:
        if position in skip:
            if not source.skip():
                break
        elif (got := source.read()) is not None:
            frames.append(got[0])
        else:
            break
        position += 1
    source.close()
    return frames


def test_skip_passes_over_frames_of_a_video_file(video_file):
    every = [bgr for bgr, _ in _read_all(VideoFileSource(video_file))]
    kept = _read_skipping(VideoFileSource(video_file), {0, 3, 4, 11})  # 0: the frame open() read
    assert len(kept) == 8
    for got, want in zip(kept, [every[i] for i in (1, 2, 5, 6, 7, 8, 9, 10)]):
        np.testing.assert_array_equal(got, want)
    source = VideoFileSource(video_file)
    source.open()
    assert all(source.skip() for _ in range(12)) and not source.skip()  # False at the end
    assert VideoFileSource.skips_cheaply and not DemoSource.skips_cheaply


def test_skip_passes_over_images_of_a_folder_without_reading_them(tmp_path):
    for i in range(1, 5):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "frame2.png").write_bytes(b"not a png")  # never decoded: skipped
    kept = _read_skipping(ImageFolderSource(tmp_path), {1})
    assert [int(f[0, 0, 0]) for f in kept] == [1, 3, 4]
