"""Prepare a model once per process, then open cheap runners from it.

As Polygraphy splits loaders from runners: ``prepare_model`` does the slow, once-only work
(read the checkpoint; choose the backend; for an engine backend, build the engine into the
cache or find it there) and returns a ``PreparedModel``; its ``open()`` makes a new runner
(a Backend: per-part state, so one per pipeline) from what was prepared, with no export,
compile or file re-read. An engine directory made by build_engine.py is opened as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from building.cache import cached_engine, default_cache_dir
from engines.auto import Choice, choose_backend, construct, detect_runtimes, engine_choice, open_torch, torch_device
from engines.base import Backend
from engines.enginedir import EngineInfo, check_expected_contract, is_engine_dir, read_engine
from engines.table import AUTO, CHECKPOINT_ENGINE_PRECISIONS, check_precision, check_request, kind_of
from twostream.contract import ModelContract
from twostream.errors import EngineError
from twostream.model import TwoStreamNet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedModel:
    """What ``open()`` runs: built files (``engine_dir`` and its ``info``) for ``backend``, or a
    loaded ``model`` that PyTorch runs in ``precision`` on ``device``. ``description`` says
    what was chosen and why, in one line. ``threads``: per-part threads of an ONNX Runtime or
    OpenVINO session (None: its default); ``input_size``: (H, W) frames are resized to."""

    backend: str
    precision: str
    device: str
    contract: ModelContract
    description: str
    engine_dir: Path | None = None
    info: EngineInfo | None = None
    model: TwoStreamNet | None = field(default=None, compare=False, repr=False)
    threads: int | None = None
    input_size: tuple[int, int] | None = None

    def open(self) -> Backend:
        """A new runner. Cheap: a session/compile from the prepared files, or a wrapper around
        the loaded model (fp32 on the CPU shares it; other precisions cast a private copy)."""
        if self.model is not None:
            return open_torch(self.model, self.precision, self.device, self.input_size)
        return construct(self.backend, self.info, self.info.files(self.engine_dir), threads=self.threads,
                         input_size=self.input_size)


def prepare_model(path: str | Path, backend: str = AUTO, precision: str = AUTO, *,
                  cache_dir: str | Path | None = None, threads: int | None = None,
                  input_size: tuple[int, int] | None = None,
                  expect_contract: ModelContract | None = None, device: str | None = None) -> PreparedModel:
    """Prepare a checkpoint file or an engine directory for ``backend`` in ``precision``
    ("auto": the auto chain; fp32, or an engine directory's own). ``device``: where PyTorch
    runs a checkpoint, a resolved torch device name (twostream.devices.resolve_device; None:
    the GPU when there is one); built engines run where their backend does. A checkpoint for an engine
    backend is built into ``cache_dir`` (default: building.cache.default_cache_dir()) unless
    it is there already. Which backend "auto" picked, and why, is logged. Raises EngineError,
    ContractMismatch or CheckpointError, one line each."""
    check_request(backend, precision)
    path = Path(path)
    if is_engine_dir(path):
        return _prepare_engine_dir(path, backend, precision, threads, input_size, expect_contract)
    if path.is_dir():
        raise EngineError(f"{path} is a folder but not an engine directory (no engine.json)")
    from twostream.checkpoint import load_model

    model, checkpoint = load_model(path)
    check_expected_contract(checkpoint.contract, expect_contract, path)
    choice = choose_backend(detect_runtimes()) if backend == AUTO else Choice(backend, "asked for")
    if backend == AUTO:
        logger.info("backend: %s (%s)", choice.backend, choice.reason)
    precision = "fp32" if precision == AUTO else precision
    check_precision(choice.backend, precision)
    kind = kind_of(choice.backend)
    if not kind.built:
        device = device or torch_device()
        return PreparedModel(kind.name, precision, device, model.contract,
                             f"{kind.name} {precision} on {device} ({choice.reason}), {path}",
                             model=model, threads=threads, input_size=input_size)
    if precision not in CHECKPOINT_ENGINE_PRECISIONS:
        raise EngineError(f"int8 needs a calibrated engine: run build_engine.py --model {path} --backend "
                          f"{kind.name} --precision int8 --out DIR, then pass --model DIR")
    entry = cached_engine(model, path, kind.name, precision, Path(cache_dir) if cache_dir else default_cache_dir())
    info = read_engine(entry)
    return PreparedModel(kind.name, precision, kind.devices[0], info.contract,
                         f"{kind.name} {precision} ({choice.reason}), {path} built into {entry}",
                         engine_dir=entry, info=info, threads=threads, input_size=input_size)


def _prepare_engine_dir(path: Path, backend: str, precision: str, threads: int | None,
                        input_size: tuple[int, int] | None, expect_contract: ModelContract | None) -> PreparedModel:
    info = read_engine(path)
    check_expected_contract(info.contract, expect_contract, path)
    if precision not in (AUTO, info.precision):
        raise EngineError(f"{path} holds a {info.precision} engine, not {precision}")
    choice = engine_choice(path, info, backend)
    parts = f"{info.spatial.precision}/{info.temporal.precision}/{info.head.precision}"
    if backend == AUTO:
        logger.info("backend: %s (%s); engine: %s, parts %s", choice.backend, choice.reason, info.precision, parts)
    kind = kind_of(choice.backend)
    return PreparedModel(kind.name, info.precision, kind.devices[0], info.contract,
                         f"{kind.name} {info.precision} ({choice.reason}), engine directory {path}, parts {parts}",
                         engine_dir=path, info=info, threads=threads, input_size=input_size)


def open_model(path: str | Path, backend: str = AUTO, precision: str = AUTO, **kwargs) -> Backend:
    """``prepare_model(path, backend, precision, **kwargs).open()``: for one runner, once."""
    return prepare_model(path, backend, precision, **kwargs).open()
