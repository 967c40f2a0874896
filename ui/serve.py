"""The page's start-up: the process's streams, once, on one shared engine; then the page
over them until Ctrl-C or SIGTERM.

    Backend ─▶ StreamSet (one SharedEngine) ─▶ process streams (every --source), started here
                                            ─▶ session streams, added and removed by ui.tabs
    LivePage ─▶ Tabs ─▶ one record per browser tab: what it watches, its own stream if any

Every tab watches the process streams; loading the page starts nothing. A tab's own source is
one more stream on the same engine (an engine client), never an engine of its own.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable, Sequence

from engines.base import Backend
from realtime.batching import BatchSettings
from realtime.pipeline import PipelineSettings
from realtime.sources import Source
from realtime.streams import RetryPolicy, StreamState, StreamStatus
from realtime.streamset import SourceSpec, StreamSet
from ui.settings import PageSettings
from ui.tabs import Tabs
from ui.views import StreamView

logger = logging.getLogger(__name__)


def log_status(status: StreamStatus) -> None:
    """A stream's state change as a log line on the server's console."""
    error = f": {status.error}" if status.error else ""
    level = logging.WARNING if status.state is StreamState.FAILED else logging.INFO
    logger.log(level, "stream %s: %s%s", status.name, status.state.value, error)


def start_streams(backend: Backend, sources: Sequence[tuple[SourceSpec, Source]], settings: PageSettings,
                  pipeline: PipelineSettings = PipelineSettings(), batch: BatchSettings = BatchSettings(),
                  retry: RetryPolicy = RetryPolicy()) -> tuple[StreamSet, Tabs]:
    """The process's streams on one shared engine built from ``backend`` (which the StreamSet
    closes), started, and the tabs' registry over them with its reaper running. The caller
    closes the Tabs, then the StreamSet."""
    pipeline = replace(pipeline, history=max(pipeline.history, settings.history))
    try:
        streamset = StreamSet(backend, pipeline, batch=batch, retry=retry, on_status=log_status)
    except BaseException:
        backend.close()
        raise
    try:
        views = []
        for spec, source in sources:
            label = spec.name if spec.named else f"stream {spec.name}"
            views.append(StreamView(streamset.add(spec.name, source), settings.views, label=label))
        streamset.start()
        tabs = Tabs(streamset, tuple(views), settings.limits, settings.views, webcam_fps=settings.webcam_fps,
                    webcam_timeout_s=settings.source.read_timeout_s * 2)
        return streamset, tabs.start()
    except BaseException:
        streamset.close()
        raise


def serve_page(backend: Backend, sources: Sequence[tuple[SourceSpec, Source]], settings: PageSettings,
               pipeline: PipelineSettings = PipelineSettings(), batch: BatchSettings = BatchSettings(),
               retry: RetryPolicy = RetryPolicy(), ready: Callable[[str], None] = print) -> None:
    """Run ``sources`` as the process's streams and serve the page over them until
    KeyboardInterrupt; then close every tab's stream, the server, the streams and the engine."""
    from ui.page import LivePage  # Gradio takes seconds to import: not before it is needed

    streamset, tabs = start_streams(backend, sources, settings, pipeline, batch, retry)
    try:
        engine = f"{backend.name} {backend.precision} on {backend.device} (requested: {settings.backend})"
        LivePage(settings, tabs, engine).serve(ready)  # closes the tabs
    finally:
        tabs.close()
        streamset.close()
