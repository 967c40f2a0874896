"""Many live streams in one process: one SharedEngine, one supervised Stream per source.

    Backend ─▶ SharedEngine (cross-stream batching) ─client─▶ Stream "cam1" ─▶ its own capture,
                                                    ─client─▶ Stream "cam2"    flow, rings,
                                                    ─client─▶ Stream "0"       feature cache ...
    torch flow (tvl1-torch) only:
    SharedFlow (one flow_fields call for the ready pairs of all streams) ─client─▶ each Stream

Also the source list a command line names: ``name=spec`` per ``--source`` or per line of a
``--sources`` file (blank lines and ``#`` comments allowed; without a name, a stream is named
by its index, counted over all sources in order).
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from engines.base import Backend
from realtime.batching import BatchSettings, BatchStats
from realtime.sharedengine import SharedEngine
from realtime.deviceflow import runs_on_device
from realtime.errors import PipelineError
from realtime.flowbatch import SharedFlow
from realtime.messages import Prediction
from realtime.pipeline import PipelineSettings
from realtime.sources import Source, SourceSettings, open_source
from realtime.streams import RetryPolicy, Stream, StreamState, StreamStatus, one_line
from twostream.errors import SourceError

# A stream name: what may stand before '=' in 'name=spec'. No ':' or '/', so a URL or a path
# with '=' in it (rtsp://host/x?a=b, ./a=b.mp4) is never mistaken for a name.
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class SourceSpec:
    """One stream to run: its ``name`` and the ``spec`` realtime.sources.open_source reads;
    ``named``: the user gave the name (False: it is the stream's index); ``where`` says where
    it was given, for messages."""

    name: str
    spec: str
    named: bool
    where: str


def parse_spec(text: str, index: int, where: str) -> SourceSpec:
    """'name=spec' or 'spec' -> SourceSpec (unnamed: the name is ``index``). SourceError on a
    bad line, naming ``where``."""
    text = text.strip()
    head, sep, tail = text.partition("=")
    if sep and _NAME.fullmatch(head.strip()):
        name, spec = head.strip(), tail.strip()
        if not spec:
            raise SourceError(f"{where}: no source after '{name}='")
        return SourceSpec(name, spec, True, where)
    if sep and not head.strip():
        raise SourceError(f"{where}: empty stream name in {text!r} (use NAME=SOURCE)")
    if not text:
        raise SourceError(f"{where}: empty source")
    return SourceSpec(str(index), text, False, where)


def read_sources_file(path: Path) -> list[tuple[str, str]]:
    """The (text, where) of each source line of ``path``; SourceError when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SourceError(f"--sources {path}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"--sources {path}: is a folder, not a file") from None
    except PermissionError:
        raise SourceError(f"--sources {path}: permission denied") from None
    except UnicodeDecodeError:
        raise SourceError(f"--sources {path}: not a text file (not UTF-8)") from None
    except OSError as exc:
        raise SourceError(f"--sources {path}: {exc.strerror or exc}") from None
    lines = [(line.strip(), f"{path}:{number}") for number, line in enumerate(text.splitlines(), 1)]
    lines = [(line, where) for line, where in lines if line and not line.startswith("#")]
    if not lines:
        raise SourceError(f"--sources {path}: no sources in it (one per line: SOURCE or NAME=SOURCE)")
    return lines


def source_specs(sources: Sequence[str], sources_file: Path | None = None) -> tuple[SourceSpec, ...]:
    """The streams named by ``--source`` values, then by the lines of ``--sources FILE``, in
    that order. SourceError (one line) on a bad line, a missing file or a duplicate name."""
    given = [(text, f"--source {text!r}") for text in sources]
    if sources_file is not None:
        given += read_sources_file(sources_file)
    specs: list[SourceSpec] = []
    seen: dict[str, str] = {}
    for index, (text, where) in enumerate(given):
        spec = parse_spec(text, index, where)
        if spec.name in seen:
            raise SourceError(f"duplicate stream name {spec.name!r} ({seen[spec.name]} and {where})")
        seen[spec.name] = where
        specs.append(spec)
    return tuple(specs)


def check_sources(specs: Sequence[SourceSpec], settings: SourceSettings = SourceSettings(),
                  on_failed: Callable[[StreamStatus], None] | None = None
                  ) -> tuple[dict[str, Source], dict[str, StreamStatus]]:
    """Each spec's source, checked before slow setup (loading a model) -> ({name: Source},
    {name: its FAILED StreamStatus}); ``on_failed`` hears of each failure as it happens. A file
    or folder is opened (a bad one fails fast); a live source only probed (a URL's server: is it
    there at all?), since what it buffered while a model loaded would be stale."""
    sources: dict[str, Source] = {}
    failed: dict[str, StreamStatus] = {}
    for spec in specs:
        try:
            source = open_source(spec.spec, settings)
            if source.live:
                source.probe()
            else:
                source.open()
            sources[spec.name] = source
        except SourceError as exc:
            failed[spec.name] = StreamStatus(spec.name, StreamState.FAILED, one_line(exc), 0, time.monotonic())
            if on_failed is not None:
                on_failed(failed[spec.name])
    return sources, failed


class StreamSet:
    """Named streams scored on one shared, batching engine built from ``backend`` (which it
    closes); with torch flow, their flow batched by one SharedFlow too (``flow``, else None),
    with the same BatchSettings. ``add`` streams, ``start`` them (streams added later start at once), ``stop`` or
    ``close``; ``streams`` in the order added. ``on_prediction(name, prediction)`` and
    ``on_status(status)`` are every stream's callbacks (realtime.streams.Stream).
    Raises ContractMismatch at construction if the flow settings differ from the model's."""

    def __init__(self, backend: Backend, settings: PipelineSettings = PipelineSettings(), *,
                 batch: BatchSettings = BatchSettings(), retry: RetryPolicy = RetryPolicy(),
                 on_prediction: Callable[[str, Prediction], None] | None = None,
                 on_status: Callable[[StreamStatus], None] | None = None,
                 rng: random.Random | None = None):
        # Resolved once for every stream: an allowed contract mismatch warns once.
        self.flow_spec = settings.flow.resolve(backend.contract)
        self.settings, self.retry = settings, retry
        self._on_prediction, self._on_status = on_prediction, on_status
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._streams: dict[str, Stream] = {}  # insertion order is the streams' order
        self._started = False
        self.engine = SharedEngine(backend, batch)
        self.flow = SharedFlow(self.flow_spec, batch) if runs_on_device(self.flow_spec) else None

    def add(self, name: str, source: Source) -> Stream:
        """A new stream named ``name`` on ``source`` (started at once if the set runs)."""
        with self._lock:
            if name in self._streams:
                raise PipelineError(f"a stream named {name!r} is already running")
            stream = Stream(name, source, self.engine.client(), self.settings, self.retry,
                            self._on_prediction, self._on_status,
                            rng=random.Random(self._rng.random()), flow_spec=self.flow_spec,
                            flow_client=None if self.flow is None else self.flow.client())
            self._streams[name] = stream
            if self._started:
                stream.start()
        return stream

    def remove(self, name: str, timeout: float | None = None) -> tuple[str, ...]:
        """Stop stream ``name`` and forget it; the names of threads that did not end in time."""
        with self._lock:
            stream = self._streams.pop(name)
        return stream.stop(timeout)

    @property
    def streams(self) -> tuple[Stream, ...]:
        with self._lock:
            return tuple(self._streams.values())

    def stream(self, name: str) -> Stream:
        """The stream named ``name`` (KeyError if none)."""
        with self._lock:
            return self._streams[name]

    def start(self) -> "StreamSet":
        with self._lock:
            self._started = True
            streams = tuple(self._streams.values())
        for stream in streams:
            stream.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every stream ended or failed (``timeout`` over all). True when they have."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for stream in self.streams:
            stream.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.done

    @property
    def done(self) -> bool:
        """Every stream ended or failed."""
        return all(stream.done for stream in self.streams)

    @property
    def all_failed(self) -> bool:
        """There are streams and every one of them failed."""
        streams = self.streams
        return bool(streams) and all(s.status().state is StreamState.FAILED for s in streams)

    def stats(self) -> BatchStats:
        """The shared engine's batching statistics; with torch flow, the shared flow's follow
        the engine's parts as part "flow" (pairs per flow_fields call)."""
        stats = self.engine.stats()
        if self.flow is None:
            return stats
        return replace(stats, parts=(*stats.parts, self.flow.stats()))

    def stop(self, timeout: float | None = None) -> tuple[str, ...]:
        """Stop every stream (in parallel: each drains its queued frames); the names of threads
        that did not end in time, as 'stream/thread'."""
        streams = self.streams
        for stream in streams:
            stream.request_stop()  # all at once, so they drain together
        unjoined = []
        for stream in streams:
            unjoined += [f"{stream.name}/{thread}" for thread in stream.stop(timeout)]
        return tuple(unjoined)

    def close(self, timeout: float | None = None) -> tuple[str, ...]:
        """``stop``, then close the shared engine (and its backend). Idempotent."""
        unjoined = self.stop(timeout)
        self.engine.close()
        if self.flow is not None:
            self.flow.close()
        return unjoined

    def __enter__(self) -> "StreamSet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
