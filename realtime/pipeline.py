"""The stage graph, wired in one place.

    Source ─▶ CaptureStage ─Frame─▶ FlowStage ─FlowField─▶ TowerStage ─TowerFeatures─▶ HeadStage
              live: newest wins       │ writes                 │ reads    │ writes        │ gathers
              files: back-pressure    ▼                        │          ▼               ▼
                                 FrameRing, FlowRing ◀─────────┘      FeatureCache ──▶ Prediction ─▶ latest
                                                                                   slot, history, stats,
                                                                                   on_prediction callback

Torch flow (tvl1-torch) takes DeviceFlowStage instead of FlowStage: frames go to FlowSpec.device
once, and the frame and flow rings live there (realtime.deviceflow); the tower stage reads ring
views on the device. Its pairs are computed alone, or by a shared flow worker batching many
streams (``flow_client``, realtime.flowbatch).

One thread per stage: on a 2-core CPU the per-frame work (decode, flow, two towers, head)
keeps both cores busy only if the stages run in parallel, so torch runs single-threaded
inside each call (see engines.torch_backend). Channels between stages are
bounded; the rings are sized so a writer can never lap its reader (realtime.rings).

Use as a context manager (start on enter, stop and join on exit) or call start/wait/stop.
A pipeline runs one connection of a source; realtime.streams supervises a named stream across
reconnects by building a new pipeline per connection, handing each the stream's statistics and
result store and the capture index its frames continue from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from engines.base import Backend
from realtime.capture import CaptureSettings, CaptureStage, capture_channel
from realtime.channel import Channel
from realtime.deviceflow import DeviceFlowStage, own_fields, runs_on_device
from realtime.errors import PipelineError
from realtime.flowbatch import FlowClient
from realtime.flowstage import FlowSettings, FlowStage
from realtime.messages import Frame, Prediction
from realtime.results import ResultStore
from realtime.rings import FeatureCache, FlowRing, FrameRing
from realtime.scorer import HeadStage, ScorerSettings
from realtime.sources import Source
from realtime.stage import Control
from realtime.stats import PipelineStats, StatsSnapshot
from realtime.towers import TowerStage
from twostream.events import Event
from twostream.preprocess import FlowSpec, WindowPlan


@dataclass(frozen=True)
class PipelineSettings:
    """Settings of every stage, composed; the command line maps onto these."""

    capture: CaptureSettings = field(default_factory=CaptureSettings)
    flow: FlowSettings = field(default_factory=FlowSettings)
    scorer: ScorerSettings = field(default_factory=ScorerSettings)
    stage_queue: int = 2  # items between processing stages for files: absorbs jitter, keeps cores busy
    # Live: every queued frame is latency once the pipeline falls behind (only capture drops), so
    # the queues behind the newest-wins capture channel are kept as short as they can be.
    live_stage_queue: int = 1
    history: int = 256  # predictions kept for the UI
    events: int = 32  # gesture events kept for the UI's event log
    stats_window: int = 300  # predictions the percentiles are over
    poll_s: float = 0.05  # longest any stage waits before re-checking stop/abort
    join_timeout_s: float = 10.0


class Pipeline:
    """A running recognizer: ``latest`` is the newest Prediction, ``history()`` the recent
    ones, ``events()`` the recent gesture events, ``stats()`` a StatsSnapshot. Raises
    ContractMismatch at construction if the flow settings differ from the model's contract
    (unless allowed: then twostream.contract logs a warning), SourceError from ``start``.

    ``stats`` and ``results``: carry on an earlier pipeline's statistics (frames, drops,
    latencies) and results (history, events) instead of starting empty; ``first_index``: the
    capture index of this pipeline's first frame (a reconnected stream's indices continue);
    ``flow_spec``: the flow already resolved from ``settings.flow`` (resolve once, warn once);
    ``flow_client``: for torch flow, the shared flow worker that batches this stream's pairs
    with other streams' (None: its own calls)."""

    def __init__(self, source: Source, backend: Backend, settings: PipelineSettings = PipelineSettings(), *,
                 on_prediction: Callable[[Prediction], None] | None = None,
                 stats: PipelineStats | None = None, results: ResultStore | None = None,
                 first_index: int = 0, flow_spec: FlowSpec | None = None, flow_client: FlowClient | None = None):
        contract = backend.contract
        flow = flow_spec if flow_spec is not None else settings.flow.resolve(contract)
        size = flow.size
        if tuple(size) != tuple(backend.input_size):
            raise PipelineError(f"frames would be resized to {size} but the backend expects {backend.input_size}")
        if flow.direction != contract.flow_direction:  # the towers would read stacks of the wrong fields
            raise PipelineError(f"flow spec computes {flow.direction} fields but the model's stacks are "
                                f"{contract.flow_direction}")
        self.source, self.backend, self.settings = source, backend, settings
        self.plan = WindowPlan.of(contract, settings.scorer.hop)
        self.flow_method, self.input_size = flow.method, size
        self.control = Control(settings.poll_s)
        self.stats_collector = stats if stats is not None else PipelineStats(settings.stats_window)
        self.results = results if results is not None else ResultStore(settings.history, settings.events)
        self._on_prediction = on_prediction
        self._started = False

        live = settings.capture.paced_like_live(source)
        queue = settings.live_stage_queue if live else settings.stage_queue
        lead = queue + 2  # how far a ring's writer can be ahead of its reader: queued + one in each hand
        device = flow.device if runs_on_device(flow) else None  # where the frame and flow rings live
        self.flow_device = device  # None: host rings and OpenCV flow (realtime.flowstage)
        frames = FrameRing(1 + lead, size, device)
        fields = FlowRing(contract.stack_length + lead, size, device, flow.channels)
        cache = FeatureCache(self.plan.reach + lead, backend.feature_shape, backend.temporal_feature_shape)
        self._captured = capture_channel(source, settings.capture)
        flowed: Channel = Channel(queue)
        featured: Channel = Channel(queue)
        if flow_client is not None and device is None:
            raise PipelineError(f"a shared flow client is for torch flow, not {flow.method!r}")
        if device is not None:
            fields_fn = flow_client.fields if flow_client is not None else own_fields(flow)
            flow_stage = DeviceFlowStage(self.control, self._captured, flowed, frames, fields, flow, fields_fn)
        else:
            flow_stage = FlowStage(self.control, self._captured, flowed, frames, fields, flow)
        self._stages = (
            CaptureStage(self.control, source, self._captured, settings.capture, self._on_capture, first_index),
            flow_stage,
            TowerStage(self.control, flowed, featured, backend, frames, fields, cache, self.plan),
            HeadStage(self.control, featured, backend, cache, self.plan, settings.scorer, self._publish,
                      lambda: self.stats_collector.retired_drops + self._captured.dropped),
        )

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        """Warm the backend up, open the source unless already open (SourceError here),
        start the threads."""
        if self._started:
            raise PipelineError("pipeline already started")
        try:
            # Warm-up first: a live source opened earlier would queue stale frames meanwhile.
            self.backend.warm_up()
            self.source.open()
        except BaseException:
            self.source.close()
            raise
        self._started = True
        for stage in reversed(self._stages):  # consumers first, so nothing waits on a missing reader
            stage.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every frame is scored (source ended, --max-frames, or stop). True when done.
        Re-raises the first error any stage hit."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for stage in self._stages:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not stage.join(remaining):
                break
        if self.control.error is not None:
            raise self.control.error
        return self.done

    @property
    def done(self) -> bool:
        return self._started and not any(stage.alive for stage in self._stages)

    def stop(self, timeout: float | None = None) -> tuple[str, ...]:
        """Stop capturing, let the queued frames drain through, join every thread.
        Returns the names of threads that did not end in time (empty when all joined)."""
        if not self._started:
            return ()
        timeout = self.settings.join_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.control.stop.set()
        capture, *rest = self._stages
        if not capture.join(timeout):
            # Stuck in a driver read: the rest must not wait for a channel it may never close.
            self.control.abort.set()
        for stage in rest:
            stage.join(max(0.0, deadline - time.monotonic()))
        if any(stage.alive for stage in self._stages):
            self.control.abort.set()
            for stage in self._stages:
                stage.join(self.settings.poll_s * 4)
        return tuple(stage.name for stage in self._stages if stage.alive)

    def __enter__(self) -> "Pipeline":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- results ---------------------------------------------------------------------------
    def _on_capture(self, frame: Frame) -> None:
        self.results.on_capture(frame)
        self.stats_collector.on_capture(frame.t_capture)

    def _publish(self, prediction: Prediction) -> None:
        self.results.publish(prediction)
        self.stats_collector.on_prediction(prediction)
        if self._on_prediction is not None:
            self._on_prediction(prediction)

    def events(self) -> tuple[Event, ...]:
        """The recent gesture events, oldest first; the open one (if any) has end_frame None."""
        return self.results.events()

    @property
    def latest(self) -> Prediction | None:
        """The newest prediction (None before the first complete window)."""
        return self.results.latest

    @property
    def latest_frame(self) -> Frame | None:
        """The newest captured frame (for a live view; it may be newer than ``latest``)."""
        return self.results.latest_frame

    def next_prediction(self, after_seq: int = -1, timeout: float = 1.0) -> Prediction | None:
        """The newest prediction newer than ``after_seq``, waiting up to ``timeout`` s for one."""
        return self.results.wait_for(lambda p: p.seq > after_seq, timeout)

    def history(self) -> tuple[Prediction, ...]:
        return self.results.history()

    def stats(self) -> StatsSnapshot:
        return self.stats_collector.snapshot(self._captured.dropped)

    @property
    def frames_captured(self) -> int:
        """Frames this pipeline captured (from ``first_index`` on)."""
        return self._stages[0].captured

    @property
    def dropped(self) -> int:
        """Frames this pipeline's capture dropped (newest-wins); ``stats()`` adds the drops
        retired into its PipelineStats by earlier pipelines."""
        return self._captured.dropped
