"""What the page may open. A browser user must not be able to make the server open arbitrary
local paths, or connect to arbitrary hosts and ports (a closed and a silent port answer
differently, so an open URL field is a port scanner of the server's network):

- a file is opened only if it is an upload (in Gradio's upload folder) or lies under a
  directory the operator named with ``--allow-dir``;
- a stream URL only if it lies under a prefix the operator named with ``--allow-url``.

The process's own ``--source`` is typed by the operator and is not checked here. Cameras go
through realtime.sources as on the command line.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from realtime.sources import (CameraSource, DemoSource, Source, SourceSettings, StreamUrlSource,
                              VideoFileSource, open_source)
from twostream.errors import SourceError

# The choices of the page's source selector, in the order shown.
DEMO, CAMERA, URL, UPLOAD, SERVER_PATH, WEBCAM = (
    "demo", "camera index", "RTSP/HTTP URL (--allow-url)", "uploaded video", "server path (--allow-dir)", "browser webcam")
SOURCE_KINDS = (DEMO, CAMERA, URL, UPLOAD, SERVER_PATH, WEBCAM)

# The port a URL without one connects to (RFC 2326/7826 for RTSP(S), Adobe's RTMP, HTTP(S)):
# the port is part of what --allow-url allows, so it must be known on both sides.
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}
# Characters that may be read differently by Python's URL parser and FFmpeg's (which is what
# connects): a URL holding one is refused rather than guessed at.
_AMBIGUOUS = set(string.whitespace) | {"\\"} | {chr(c) for c in range(32)} | {"\x7f"}


class PathNotAllowed(SourceError, PermissionError):
    """A path outside the upload folder and every --allow-dir."""


class UrlNotAllowed(SourceError, PermissionError):
    """A URL outside every --allow-url prefix."""


def _url_parts(url: str) -> tuple[str, str, int, tuple[str, ...]]:
    """(scheme, host, port, decoded path segments) of a stream URL; credentials, query and
    fragment left out. SourceError when it is malformed or ambiguous."""
    if any(ch in _AMBIGUOUS for ch in url):
        raise SourceError("whitespace, control characters and backslashes are not allowed in a URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port that is not a number, or out of range; bad brackets
        raise SourceError(f"malformed URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise SourceError(f"unsupported URL scheme '{scheme}' (use {', '.join(DEFAULT_PORTS)})")
    if parts.netloc.count("@") > 1:
        raise SourceError("more than one '@' in the URL's host part")
    host = (parts.hostname or "").rstrip(".")  # hostname is lowercased; 'a.b.' is 'a.b'
    if not host:
        raise SourceError("the URL names no host")
    segments = tuple(unquote(s) for s in parts.path.split("/") if s)
    if any(s in (".", "..") or "/" in s for s in segments):
        raise SourceError("'.', '..' and encoded '/' are not allowed in the URL's path")
    return scheme, host, DEFAULT_PORTS[scheme] if port is None else port, segments


@dataclass(frozen=True)
class UrlPrefix:
    """One ``--allow-url``. A URL lies under it when scheme, host and port are equal (a missing
    port is the scheme's default) and its path starts with this one's whole segments:
    ``rtsp://cam.local/cams`` allows ``rtsp://cam.local:554/cams/1`` but neither
    ``rtsp://cam.local.evil.com/cams`` nor ``rtsp://cam.local/cams2``. User names and
    passwords do not count, on either side."""

    scheme: str
    host: str
    port: int
    segments: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "UrlPrefix":
        """The prefix an operator typed; SourceError naming the flag when it is not one."""
        try:
            scheme, host, port, segments = _url_parts(text.strip())
        except SourceError as exc:
            raise SourceError(f"--allow-url {text}: {exc}") from None
        if urlsplit(text.strip()).query or "#" in text:
            raise SourceError(f"--allow-url {text}: a prefix has no query or fragment")
        return cls(scheme, host, port, segments)

    def allows(self, url: str) -> bool:
        """True when ``url`` lies under this prefix (False when it is malformed)."""
        try:
            scheme, host, port, segments = _url_parts(url)
        except SourceError:
            return False
        return ((scheme, host, port) == (self.scheme, self.host, self.port)
                and segments[:len(self.segments)] == self.segments)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6
        return f"{self.scheme}://{host}:{self.port}/" + "/".join(self.segments)


@dataclass(frozen=True)
class SourcePolicy:
    """``upload_dirs``: where Gradio stores uploads; ``allow_dirs``: the operator's --allow-dir
    (both resolved, symlinks and '..' followed, before comparing); ``allow_urls``: the
    operator's --allow-url prefixes (none: the page opens no URL)."""

    upload_dirs: tuple[Path, ...] = ()
    allow_dirs: tuple[Path, ...] = ()
    allow_urls: tuple[UrlPrefix, ...] = ()

    def check_path(self, path: str | Path, *, uploaded: bool) -> Path:
        """The resolved path if it may be opened; PathNotAllowed otherwise. An upload must lie
        in an upload folder; a typed path under an --allow-dir."""
        resolved = Path(path).expanduser().resolve()
        roots = self.upload_dirs if uploaded else self.allow_dirs
        if any(resolved.is_relative_to(root.resolve()) for root in roots):
            return resolved
        if uploaded:
            raise PathNotAllowed(f"refused '{path}': not in the upload folder")
        if not self.allow_dirs:
            raise PathNotAllowed(f"refused '{path}': the server opens only uploads "
                                 "(start it with --allow-dir DIR to allow paths under DIR)")
        shown = ", ".join(str(d) for d in self.allow_dirs)
        raise PathNotAllowed(f"refused '{path}': not under an allowed directory ({shown})")

    def check_url(self, source: StreamUrlSource) -> StreamUrlSource:
        """``source`` if its URL lies under an --allow-url prefix; UrlNotAllowed otherwise
        (the message shows the URL as the source describes it: without its password)."""
        if any(prefix.allows(source.url) for prefix in self.allow_urls):
            return source
        if not self.allow_urls:
            raise UrlNotAllowed(f"refused {source.description}: the server opens no URL from the page "
                                "(start it with --allow-url PREFIX, e.g. --allow-url rtsp://cam.local:8554/, "
                                "to allow URLs under PREFIX)")
        shown = ", ".join(str(p) for p in self.allow_urls)
        raise UrlNotAllowed(f"refused {source.description}: not under an --allow-url prefix ({shown})")


def source_from_controls(kind: str, text: str, upload: str | None, policy: SourcePolicy,
                         settings: SourceSettings) -> Source:
    """The (unopened) source the page's controls describe; SourceError with a clear message
    when the input is missing, of the wrong kind, or a path or URL that is not allowed.
    The browser webcam is not built here: its source is fed by the session (ui.webcam)."""
    text = (text or "").strip()
    if kind == DEMO:
        return DemoSource(settings.demo_seed, settings.demo_size, settings.demo_fps)
    if kind == CAMERA:
        if not text.isdigit():
            raise SourceError(f"camera index must be a number such as 0, got {text!r}")
        return CameraSource(int(text))
    if kind == URL:
        if "://" not in text:
            raise SourceError(f"expected a URL such as rtsp://host:8554/cam, got {text!r}")
        source = open_source(text, settings)  # builds the source; connects to nothing yet
        if not isinstance(source, StreamUrlSource):
            # file:// would be a back door to local paths.
            raise SourceError(f"not a stream URL: {text!r} (use rtsp, rtmp, http or https)")
        return policy.check_url(source)
    if kind == UPLOAD:
        if not upload:
            raise SourceError("no uploaded file: upload a video first")
        return VideoFileSource(policy.check_path(upload, uploaded=True))
    if kind == SERVER_PATH:
        if not text:
            raise SourceError("type a path under an --allow-dir directory")
        path = policy.check_path(text, uploaded=False)
        source = open_source(str(path), settings)  # a video file or an image folder
        return source
    raise SourceError(f"unknown source kind {kind!r}; choose from {', '.join(SOURCE_KINDS)}")
