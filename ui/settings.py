"""The page's settings, in a module of their own: app.py reads their defaults for its options
without importing Gradio (ui.page), which takes seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ui.session import SessionSettings


@dataclass(frozen=True)
class PageSettings:
    """How the page is served. ``default_source`` is what a new session starts on (the
    --source spec, trusted: the operator typed it); ``allow_dirs`` the --allow-dir paths."""

    model_path: Path
    default_source: str = "demo"
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[str, str] | None = None
    allow_dirs: tuple[Path, ...] = ()
    backend: str = "auto"  # as requested on the command line; the panel shows what each session got
    precision: str = "fp32"
    refresh_s: float = 1.0
    webcam_every_s: float = 0.04  # 25 frames/s from the browser, the demo model's training rate
    session: SessionSettings = field(default_factory=SessionSettings)
