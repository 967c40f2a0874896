"""Engines built from a checkpoint once, then reused: a cache of engine directories keyed by
exactly what they were built from.

    <cache>/<sha256(model file)[:16]>-<backend>-<precision>-<sha256(tool versions)[:8]>/
        engine.json, spatial.*, temporal.*, head.*   an engine directory (engines.enginedir)
        cache.json    {"key": CacheKey.to_dict(), "files": {relative path: sha256}}

Only fp32 and fp16 are built here (export, compile); int8 needs calibration data and a parity
check, a deliberate build_engine.py step. An entry is used only when its cache.json holds this
build's key and every file still has its recorded digest; anything else is rebuilt (with a
warning), never used. Entries are written atomically (engines.enginedir.staged_output): two
processes building the same entry each build in their own staging folder, and the first one
to finish wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from building.builder import BuildSettings, build_parts
from engines.enginedir import is_engine_dir, read_engine, staged_output, tool_versions, write_info
from twostream.contract import ModelContract
from twostream.errors import EngineError, RecognizerError
from twostream.model import TwoStreamNet

logger = logging.getLogger(__name__)

CACHE_JSON = "cache.json"
APP_DIR = "twostream-recognizer"


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/twostream-recognizer/engines, else ~/.cache/twostream-recognizer/engines."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / APP_DIR / "engines"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """What an engine is built from: the model file's bytes, backend, precision, and the
    versions of the tools that export and compile (a new OpenVINO may compile differently)."""

    model_sha256: str
    backend: str
    precision: str
    tools: tuple[tuple[str, str], ...]  # (package, version), sorted

    @classmethod
    def of(cls, model_path: Path, backend: str, precision: str) -> "CacheKey":
        return cls(file_sha256(model_path), backend, precision, tuple(sorted(tool_versions().items())))

    @property
    def folder(self) -> str:
        tools = hashlib.sha256(json.dumps(self.tools).encode()).hexdigest()
        return f"{self.model_sha256[:16]}-{self.backend}-{self.precision}-{tools[:8]}"

    def to_dict(self) -> dict:
        return {"model_sha256": self.model_sha256, "backend": self.backend, "precision": self.precision,
                "tools": dict(self.tools)}


def _digests(folder: Path) -> dict:
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != CACHE_JSON}


def entry_problem(entry: Path, key: CacheKey, contract: ModelContract) -> str | None:
    """Why the cache entry ``entry`` cannot serve ``key`` (None: it can)."""
    if not entry.exists():
        return "is absent"
    try:
        record = json.loads((entry / CACHE_JSON).read_text())
        info = read_engine(entry)
        files = record["files"]
        if record["key"] != key.to_dict():
            return "was built from something else"
        if (info.backend, info.precision, info.contract) != (key.backend, key.precision, contract):
            return "describes another engine"
        if _digests(entry) != files:
            return "has files that changed since it was built"
    except (OSError, ValueError, KeyError, TypeError, RecognizerError) as exc:
        return f"is damaged ({type(exc).__name__}: {exc})"
    return None


def cached_engine(model: TwoStreamNet, model_path: Path, backend: str, precision: str, cache_dir: Path) -> Path:
    """The engine directory of ``model`` (loaded from ``model_path``) for ``backend`` in
    ``precision`` (fp32 or fp16): a valid cache entry, or one built now. Raises EngineError
    (and the build's own errors), one line each."""
    key = CacheKey.of(Path(model_path), backend, precision)
    entry = Path(cache_dir) / key.folder
    problem = entry_problem(entry, key, model.contract)
    if problem is None:
        logger.debug("engine cache: using %s", entry)
        return entry
    if entry.exists():
        logger.warning("engine cache: %s %s; rebuilding it", entry, problem)
        if not is_engine_dir(entry):
            shutil.rmtree(entry, ignore_errors=True)  # staged_output replaces engine directories only
    else:
        logger.info("engine cache: building %s %s for %s into %s (once)", backend, precision, model_path, entry)
    with staged_output(entry, replace=entry.exists()) as staging:
        built = build_parts(model, staging, BuildSettings(backend=backend, precision=precision))
        write_info(staging, built.info)
        record = {"key": key.to_dict(), "files": _digests(staging)}
        (staging / CACHE_JSON).write_text(json.dumps(record, indent=2) + "\n")
    # Checked again: another process may have put its own build there first.
    problem = entry_problem(entry, key, model.contract)
    if problem is not None:
        raise EngineError(f"engine cache: {entry} {problem} right after it was built")
    return entry
