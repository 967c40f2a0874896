"""The page's settings, in a module of their own: app.py reads their defaults for its options
without importing Gradio (ui.page), which takes seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from realtime.sources import SourceSettings
from ui.sources import UrlPrefix
from ui.tabs import SessionLimits
from ui.views import ViewSettings


@dataclass(frozen=True)
class PageSettings:
    """How the page is served. ``default_source`` is the process stream when the command line
    names none; ``allow_dirs`` the --allow-dir paths and ``allow_urls`` the --allow-url
    prefixes a tab may open as its own source; ``source`` how such sources open; ``limits``
    the cap and idle timeout of tabs' own sources (ui.tabs).

    ``max_upload_mb``: Gradio's upload limit (MiB; its ``max_file_size``), checked on every
    POST /gradio_api/upload, which needs no session. 200 MiB holds 2 to 3.5 minutes of
    1080p phone video (H.264 at 8-16 Mbit/s), more than a clip worth scoring from a page needs,
    and bounds what one anonymous request can write to the upload folder. ``live_wait_s``: how long a
    live-view request waits for a new frame before it answers 204 (ui.routes). ``plot_span_s``:
    how far back the probability plot reaches (streams keep predictions for it)."""

    model_path: Path
    default_source: str = "demo"
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[str, str] | None = None
    allow_dirs: tuple[Path, ...] = ()
    allow_urls: tuple[UrlPrefix, ...] = ()
    max_upload_mb: int = 200
    live_wait_s: float = 0.5
    backend: str = "auto"  # as requested on the command line; the panel shows what runs
    refresh_s: float = 1.0
    plot_span_s: float = 30.0
    webcam_every_s: float = 0.04  # 25 frames/s from the browser, the demo model's training rate
    webcam_fps: float = 25.0
    source: SourceSettings = field(default_factory=SourceSettings)
    views: ViewSettings = field(default_factory=ViewSettings)
    limits: SessionLimits = field(default_factory=SessionLimits)

    @property
    def history(self) -> int:
        """Predictions a stream keeps so the plot spans ``plot_span_s`` (40 predictions/s at most)."""
        return int(self.plot_span_s * 40)
