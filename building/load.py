"""Open a model for inference: an engine directory as it is, a checkpoint on PyTorch as it is,
or a checkpoint on an engine backend after building it (export, compile)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from engines.auto import BACKENDS, PRECISIONS, Choice, choose_backend, construct, detect_runtimes, open_engine_dir, open_torch
from engines.base import Backend
from engines.enginedir import check_expected_contract, is_engine_dir
from twostream.contract import ModelContract
from twostream.errors import EngineError


def open_model(path: str | Path, backend: str = "auto", precision: str = "auto", *, threads: int | None = None,
               input_size: tuple[int, int] | None = None, expect_contract: ModelContract | None = None,
               log: Callable[[str], None] | None = None) -> Backend:
    """Open a checkpoint file or an engine directory on ``backend`` in ``precision``.
    ``threads``: per-part threads (None: each backend's default). ``log`` hears which backend
    'auto' picked and why. Raises EngineError, ContractMismatch or CheckpointError, one line each."""
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    path = Path(path)
    say = log or (lambda _message: None)
    if is_engine_dir(path):
        return open_engine_dir(path, backend, precision, threads, input_size, expect_contract, say)
    if path.is_dir():
        raise EngineError(f"{path} is a folder but not an engine directory (no engine.json)")
    choice = choose_backend(detect_runtimes()) if backend == "auto" else Choice(backend, "asked for")
    if backend == "auto":
        say(f"backend: {choice.backend} ({choice.reason})")
    return _open_checkpoint(path, choice.backend, "fp32" if precision == "auto" else precision,
                            threads, input_size, expect_contract)


def _open_checkpoint(path: Path, backend: str, precision: str, threads, input_size, expect_contract) -> Backend:
    from twostream.checkpoint import load_model

    model, checkpoint = load_model(path)
    check_expected_contract(checkpoint.contract, expect_contract, path)
    if backend == "torch":
        return open_torch(model, precision, threads, input_size)
    if precision == "int8":
        raise EngineError(f"int8 needs a calibrated engine: run build_engine.py --model {path} --backend "
                          f"{backend} --precision int8 --out DIR, then pass --model DIR")
    if precision not in ("fp32", "fp16"):
        raise EngineError(f"{backend} runs fp32, fp16 or int8, not {precision}")
    from building.builder import BuildSettings, build_parts

    # Backends read their files when they are constructed, so the exported graphs can go
    # as soon as the backend exists.
    with tempfile.TemporaryDirectory(prefix="twostream-engine-") as work:
        info = build_parts(model, Path(work), BuildSettings(backend=backend, precision=precision)).info
        return construct(backend, info, info.files(Path(work)), threads=threads, input_size=input_size)

