"""Video sources: camera index, video file, RTSP/HTTP(S)/MJPEG URL, image folder, the live
gesture demo, and frames already in memory.

A source only opens and reads; the capture stage (realtime.capture) stamps, paces and applies
the drop policy. ``open`` runs in the caller's thread so a bad source fails before any thread
starts, with a SourceError that names it; ``read`` and ``close`` then run in the capture thread.
Blocking reads are bounded by the backend's own timeouts (FFmpeg open/read timeouts for URLs,
the V4L2 select timeout for cameras); the capture thread is a daemon in case a driver ignores them.
"""

from __future__ import annotations

import os
import re
import socket
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from realtime.messages import Truth
from twostream import seeds
from twostream.errors import SourceDisconnected, SourceError
from twostream.gestures import GestureStream

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
# The port a URL without one connects to (FFmpeg's defaults: RTSP 554, RTSPS 322, RTMP 1935).
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True)
class SourceSettings:
    """How sources open and read. Timeouts are seconds."""

    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    folder_fps: float = 25.0  # image folders have no frame rate of their own
    demo_seed: int = seeds.DEMO_STREAM
    demo_size: tuple[int, int] = (640, 480)  # (W, H), a webcam's
    demo_fps: float = 25.0


class Source(ABC):
    """Frames from somewhere. ``live`` sources run at their own pace (the capture stage drops
    the oldest frame when the pipeline falls behind); the others are read as fast as the
    pipeline takes them. ``fps`` is the native rate when known."""

    live = False
    paced = False  # True: reads return at once, so the capture stage must pace them at ``fps``
    fps: float | None = None
    # True: ``skip`` costs clearly less than ``read``, so a paced source that fell behind its
    # schedule can catch up by skipping (realtime.capture). False: skipping costs a read.
    skips_cheaply = False

    @property
    @abstractmethod
    def description(self) -> str: ...

    is_open = False

    def probe(self) -> None:
        """A cheap check that the source can be reached at all, for a caller to fail fast before
        slow setup (loading a model) without opening a live source early; SourceError if not.
        Nothing to check for most sources; a stream URL connects to its server (probe_url)."""

    def open(self) -> None:
        """Get ready to read; raises SourceError naming the source and the reason. Idempotent,
        so a caller may open early, to fail fast before slow setup such as loading a model."""
        if not self.is_open:
            self._open()
            self.is_open = True

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def read(self) -> tuple[np.ndarray, Truth | None] | None:
        """Next frame as (bgr (h, w, 3) uint8, truth or None); None at the end of a finite
        source. A live source that stops delivering raises SourceDisconnected."""

    def skip(self) -> bool:
        """Pass over the next frame without handing it out; False at the end of a finite
        source. This default reads and discards; sources that can do it cheaper override it."""
        return self.read() is not None

    def close(self) -> None:
        """Release the device or file. Idempotent."""
        self.is_open = False


def _redact(url: str) -> str:
    """Hide a password in a URL before it goes into a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def url_address(url: str) -> tuple[str, int]:
    """(host, port) a stream URL connects to; the scheme's default port when it names none."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise SourceError(f"cannot open stream '{_redact(url)}': the port in it is not a number from 0 to 65535") \
            from None
    if not parts.hostname:
        raise SourceError(f"cannot open stream '{_redact(url)}': no host in it")
    return parts.hostname, port or DEFAULT_PORTS[parts.scheme.lower()]


def _proxied(url: str) -> bool:
    """Whether FFmpeg would go through an HTTP proxy (http_proxy and no_proxy in the
    environment) rather than to the URL's own host, whom a probe would then wrongly blame."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    return (parts.scheme.lower() in ("http", "https") and bool(proxies.get("http") or proxies.get(parts.scheme))
            and not urllib.request.proxy_bypass_environment(parts.hostname or "", proxies))


def probe_url(url: str, timeout_s: float) -> None:
    """Connect to a stream URL's server over TCP and close at once (nothing is sent: the stream
    is not requested, let alone consumed). Raises SourceError saying what happened: unknown
    host, connection refused, no answer within ``timeout_s``, or the network's own reason.
    A refusal comes back at once, where FFmpeg's open would only report a failure; passwords
    never reach the message. Skipped for http(s) that goes through a proxy."""
    host, port = url_address(url)
    if _proxied(url):
        return
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 literal in brackets
    said = f"cannot open stream '{_redact(url)}'"
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise SourceError(f"{said}: unknown host {host}") from None
        raise SourceError(f"{said}: cannot look up {host} ({exc.strerror})") from None
    except ConnectionRefusedError:
        raise SourceError(f"{said}: connection refused by {where}") from None
    except TimeoutError:
        raise SourceError(f"{said}: no answer from {where} within {timeout_s:g} s") from None
    except OSError as exc:
        raise SourceError(f"{said}: cannot reach {where} ({exc.strerror or exc})") from None


class _CaptureSource(Source):
    """Common part of the cv2.VideoCapture sources. The first frame is read inside ``open``:
    a file that FFmpeg opens but cannot decode must fail there, not after threads start."""

    skips_cheaply = True

    def __init__(self) -> None:
        self._cap: cv2.VideoCapture | None = None
        self._first: np.ndarray | None = None

    def _open_capture(self, cap: cv2.VideoCapture, why_closed: str, why_empty: str) -> None:
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.description}: {why_closed}")
        ok, frame = cap.read()
        if not ok or frame is None:
            cap.release()
            raise SourceError(f"cannot open {self.description}: {why_empty}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None
        self._cap, self._first = cap, frame

    def read(self) -> tuple[np.ndarray, None] | None:
        if self._first is not None:
            frame, self._first = self._first, None
            return frame, None
        if self._cap is None:
            raise SourceError(f"{self.description} is not open")
        ok, frame = self._cap.read()
        if ok and frame is not None:
            return frame, None
        return self._ended()

    def skip(self) -> bool:
        """``grab``: FFmpeg still decodes (later frames depend on this one) but the frame is not
        converted to BGR nor copied out, about half the cost of a read (640x480 MPEG-4)."""
        if self._first is not None:
            self._first = None
            return True
        if self._cap is None:
            raise SourceError(f"{self.description} is not open")
        if self._cap.grab():
            return True
        self._ended()
        return False

    def _ended(self) -> None:
        return None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        super().close()


class VideoFileSource(_CaptureSource):
    """A video file, decoded by OpenCV's FFmpeg backend. Not live: read with back-pressure."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)

    @property
    def description(self) -> str:
        return f"video file '{self.path}'"

    def _open(self) -> None:
        if not self.path.exists():
            raise SourceError(f"cannot open {self.description}: no such file")
        if not self.path.is_file():
            raise SourceError(f"cannot open {self.description}: not a regular file")
        if not os.access(self.path, os.R_OK):
            raise SourceError(f"cannot open {self.description}: permission denied")
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        self._open_capture(cap, "not a video format FFmpeg can read (corrupt or not a video?)",
                           "no decodable video frame in it (corrupt or empty?)")


class CameraSource(_CaptureSource):
    """A local camera by index (V4L2 on Linux). Live."""

    live = True

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    @property
    def description(self) -> str:
        return f"camera {self.index}"

    def _open(self) -> None:
        cap = cv2.VideoCapture(self.index)
        if cap.isOpened():
            # One driver buffer: older frames are stale by the time we read them.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._open_capture(cap, "no such camera, or it is in use", "the camera delivered no frame")

    def _ended(self) -> None:
        raise SourceDisconnected(f"{self.description} stopped delivering frames")


class StreamUrlSource(_CaptureSource):
    """An RTSP, RTMP or HTTP(S) stream (MJPEG, HLS, ...) read through FFmpeg. Live.

    RTSP goes over TCP: OpenCV's FFmpeg backend asks for it by default. A user who needs UDP
    sets ``OPENCV_FFMPEG_CAPTURE_OPTIONS=rtsp_transport;udp`` in the environment; this class
    never writes that variable (it is process-wide, and OpenCV reads it at every open: app.py,
    a command, sets its default, without FFmpeg's frame-rate probe)."""

    live = True

    def __init__(self, url: str, settings: SourceSettings = SourceSettings()):
        super().__init__()
        self.url = url
        self.settings = settings

    @property
    def description(self) -> str:
        return f"stream '{_redact(self.url)}'"

    def probe(self) -> None:
        probe_url(self.url, self.settings.open_timeout_s)

    def _open(self) -> None:
        # The probe first: FFmpeg says only that opening failed, after its whole timeout.
        self.probe()
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.settings.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.settings.read_timeout_s * 1000)]
        cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        server = "the server" if _proxied(self.url) else "%s:%d" % url_address(self.url)
        self._open_capture(
            cap, f"{server} answers, but no stream opened within {self.settings.open_timeout_s:g} s "
                 "(no such stream, or not one FFmpeg can read?)",
            f"no video frame within {self.settings.read_timeout_s:g} s")

    def _ended(self) -> None:
        raise SourceDisconnected(f"{self.description} stopped delivering frames "
                                 f"(closed, or nothing for {self.settings.read_timeout_s:g} s)")


def _natural_key(path: Path) -> list:
    """frame2.png before frame10.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


class ImageFolderSource(Source):
    """Every image in a folder, in natural name order. Not live; ``fps`` is a setting."""

    skips_cheaply = True  # a skipped image is never decoded

    def __init__(self, path: str | Path, fps: float = 25.0):
        self.path = Path(path)
        self.fps = fps
        self._files: Iterator[Path] = iter(())

    @property
    def description(self) -> str:
        return f"image folder '{self.path}'"

    def _open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"cannot open {self.description}: no such folder")
        files = sorted((p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
        if not files:
            raise SourceError(f"cannot open {self.description}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
        self._files = iter(files)

    def read(self) -> tuple[np.ndarray, None] | None:
        path = next(self._files, None)
        if path is None:
            return None
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise SourceError(f"cannot read image '{path}' (corrupt or not an image?)")
        return frame, None

    def skip(self) -> bool:
        return next(self._files, None) is not None


class DemoSource(Source):
    """The endless gesture generator as a live camera, each frame carrying its true label and
    segment. The capture stage paces it at ``fps`` in real time (``paced``).

    It does not skip to catch up (``skips_cheaply`` False): rendering is stateful (each frame
    advances the scene's camera shake, its frame counter and its random draws), so a frame can
    only be passed over by rendering it, which costs what a read costs and gains nothing. A
    640x480 frame renders in about 7 ms of its 40 ms interval (2-core AMD EPYC), so the demo
    falls behind only on a starved machine; then the capture stage moves its schedule (it
    delivers fewer frames, as an overloaded camera would: the input fps shows it)."""

    live = True
    paced = True

    def __init__(self, seed: int = seeds.DEMO_STREAM, size: tuple[int, int] = (640, 480), fps: float = 25.0):
        self.seed, self.size, self.fps = seed, size, fps
        self._frames: Iterator | None = None

    @property
    def description(self) -> str:
        return f"demo gesture stream (seed {self.seed}, {self.size[0]}x{self.size[1]} at {self.fps:g} fps)"

    def _open(self) -> None:
        self._frames = iter(GestureStream(self.seed, self.size, self.fps))

    def read(self) -> tuple[np.ndarray, Truth]:
        if self._frames is None:
            raise SourceError(f"{self.description} is not open")
        item = next(self._frames)
        return item.bgr, Truth(item.label, item.segment)


class ArraySource(Source):
    """Frames already in memory (tests, benchmarks): BGR uint8 (h, w, 3) each, optionally
    with truths. Not live unless ``live``; a live one is paced at ``fps``, like the demo."""

    skips_cheaply = True  # skipping takes the next item of the iterable and drops it

    def __init__(self, frames: Iterable[np.ndarray], truths: Iterable[Truth] | None = None, *,
                 fps: float | None = None, live: bool = False, name: str = "frames in memory"):
        if live and not fps:
            raise ValueError("a live ArraySource needs an fps to be paced at")
        self._frames, self._truths = frames, truths
        self.fps, self.live, self.paced, self._name = fps, live, live, name
        self._iter: Iterator | None = None

    @property
    def description(self) -> str:
        return self._name

    def _open(self) -> None:
        truths = iter(self._truths) if self._truths is not None else None
        self._iter = ((f, next(truths) if truths else None) for f in self._frames)

    def read(self) -> tuple[np.ndarray, Truth | None] | None:
        return next(self._iter, None)


def open_source(spec: str, settings: SourceSettings = SourceSettings()) -> Source:
    """The source a command-line ``--source`` names (not opened yet):
    'demo', a camera index ('0'), a URL (rtsp://, rtmp://, http(s)://), a folder of images,
    or a video file path."""
    spec = spec.strip()
    if not spec:
        raise SourceError("empty source: give a camera index, a file, a folder, a URL or 'demo'")
    if spec == "demo":
        return DemoSource(settings.demo_seed, settings.demo_size, settings.demo_fps)
    if spec.isdigit():
        return CameraSource(int(spec))
    if "://" in spec:
        scheme = spec.split("://", 1)[0].lower()
        if scheme == "file":
            return open_source(urlsplit(spec).path, settings)
        if scheme not in STREAM_SCHEMES:
            raise SourceError(f"cannot open '{_redact(spec)}': unsupported URL scheme '{scheme}' "
                              f"(use {', '.join(STREAM_SCHEMES)})")
        return StreamUrlSource(spec, settings)
    if Path(spec).is_dir():
        return ImageFolderSource(spec, settings.folder_fps)
    return VideoFileSource(spec)
