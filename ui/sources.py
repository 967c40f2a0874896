"""What the page may open. A browser user must not be able to make the server open arbitrary
local paths: a file is opened only if it is an upload (in Gradio's upload folder) or lies under
a directory the operator named with ``--allow-dir``. Cameras and stream URLs go through
realtime.sources as on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from realtime.sources import (CameraSource, DemoSource, Source, SourceSettings, StreamUrlSource,
                              VideoFileSource, open_source)
from twostream.errors import SourceError

# The choices of the page's source selector, in the order shown.
DEMO, CAMERA, URL, UPLOAD, SERVER_PATH, WEBCAM = (
    "demo", "camera index", "RTSP/HTTP URL", "uploaded video", "server path (--allow-dir)", "browser webcam")
SOURCE_KINDS = (DEMO, CAMERA, URL, UPLOAD, SERVER_PATH, WEBCAM)


class PathNotAllowed(SourceError, PermissionError):
    """A path outside the upload folder and every --allow-dir."""


@dataclass(frozen=True)
class PathPolicy:
    """``upload_dirs``: where Gradio stores uploads; ``allow_dirs``: the operator's --allow-dir.
    Both are resolved (symlinks and '..' followed) before comparing."""

    upload_dirs: tuple[Path, ...] = ()
    allow_dirs: tuple[Path, ...] = ()

    def check(self, path: str | Path, *, uploaded: bool) -> Path:
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


def source_from_controls(kind: str, text: str, upload: str | None, policy: PathPolicy,
                         settings: SourceSettings) -> Source:
    """The (unopened) source the page's controls describe; SourceError with a clear message
    when the input is missing, of the wrong kind, or a path that is not allowed.
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
        source = open_source(text, settings)
        if not isinstance(source, StreamUrlSource):
            # file:// would be a back door to local paths.
            raise SourceError(f"not a stream URL: {text!r} (use rtsp, rtmp, http or https)")
        return source
    if kind == UPLOAD:
        if not upload:
            raise SourceError("no uploaded file: upload a video first")
        return VideoFileSource(policy.check(upload, uploaded=True))
    if kind == SERVER_PATH:
        if not text:
            raise SourceError("type a path under an --allow-dir directory")
        path = policy.check(text, uploaded=False)
        source = open_source(str(path), settings)  # a video file or an image folder
        return source
    raise SourceError(f"unknown source kind {kind!r}; choose from {', '.join(SOURCE_KINDS)}")
