"""What the commands (app.py, bench.py, build_engine.py, train.py) share: logging set up once
per process, and the defaults of the settings dataclasses their options read.

Library code only logs (``logging.getLogger(__name__)``); which of it reaches stderr, and how,
is decided here, by the command that runs, never by a library module.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import threading

# Every package of this project and the commands' own loggers: these log at the level the
# command asks for. Third-party loggers keep Python's default (WARNING): ONNX Runtime's
# quantiser, for one, logs per-tensor INFO lines through the root logger.
PROJECT_LOGGERS = ("twostream", "engines", "realtime", "calibration", "building", "ui",
                   "app", "bench", "build_engine", "train")


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a test may swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass  # always the current sys.stderr


def configure_logging(level: int = logging.INFO, prefix: str = "") -> None:
    """Log records as ``prefix + message`` lines on stderr: the project's at ``level`` and up,
    everyone else's at WARNING and up. Idempotent: calling it again (a second main() in one
    process) replaces the handler it installed instead of adding another."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _CurrentStderr)]:
        root.removeHandler(handler)
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter(prefix + "%(message)s"))
    root.addHandler(handler)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)


def verbosity(quiet: bool = False, verbose: bool = False) -> int:
    """--quiet: warnings only; -v/--verbose: debug; neither: progress (INFO)."""
    if quiet:
        return logging.WARNING
    return logging.DEBUG if verbose else logging.INFO


def default_of(settings_class: type, name: str):
    """The default of one field of a settings dataclass, read without building an instance
    (some need arguments that have no default, e.g. ModelContract's classes)."""
    for item in dataclasses.fields(settings_class):
        if item.name == name:
            if item.default is not dataclasses.MISSING:
                return item.default
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
            raise TypeError(f"{settings_class.__name__}.{name} has no default")
    raise TypeError(f"{settings_class.__name__} has no field {name!r}")


class JsonLines:
    """One JSON object per line on stdout, written whole from any thread, flushed as it
    happens; ``error`` writes a line on stderr under the same lock. A reader that went away
    (stdout piped into `head`) sets ``broken``, and later lines are dropped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.broken = threading.Event()

    def write(self, record: dict) -> None:
        line = json.dumps(record) + "\n"
        with self._lock:
            if self.broken.is_set():
                return
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except BrokenPipeError:
                self.broken.set()

    def error(self, line: str) -> None:
        with self._lock:
            print(line, file=sys.stderr, flush=True)


# Argument types for numeric options: argparse reports their messages as 'argument --X: ...'.
def at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value
