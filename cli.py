"""What the commands (app.py, bench.py, build_engine.py, train.py) share: logging set up once
per process, the defaults of the settings dataclasses their options read, the argument parser
whose errors are one line, and the check that a server address is free.

Library code only logs (``logging.getLogger(__name__)``); which of it reaches stderr, and how,
is decided here, by the command that runs, never by a library module.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import dataclasses
import errno
import json
import logging
import os
import socket
import sys
import threading
from typing import NoReturn

from twostream.errors import ServeError

EXIT_USAGE = 2  # argparse's own status for a bad command line, kept

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


# glibc's mallopt parameter for the most malloc arenas (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process, before its threads start; True if done.

    Why: glibc gives threads up to 8 arenas per core (16 here), and a long-running server whose
    short-lived request threads each allocate frame-sized buffers (a 640x480 frame is 900 KiB)
    scatters them over all of them; freed memory stays in each arena, so the page's resident
    memory kept growing with every browser tab that came and went (+156 MB over 60 tabs, still
    rising), where with 2 arenas it levels off (+68 MB after 20, +77 MB after 60; README, "The
    page"). Most allocation here happens under the GIL anyway, so few arenas cost no measurable
    contention. A user's own MALLOC_ARENA_MAX (or glibc tunable) wins; not glibc: nothing done."""
    if "MALLOC_ARENA_MAX" in os.environ or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): no such knob
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


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
def _number(text: str, cast: type, what: str):
    try:
        return cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def at_least_one(text: str) -> int:
    value = _number(text, int, "a whole number >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative(text: str) -> int:
    value = _number(text, int, "a whole number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float, "a number >= 0")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_seconds(text: str) -> float:
    value = _number(text, float, "seconds > 0")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def frame_size(text: str) -> tuple[int, int]:
    """'320x240' -> (320, 240)."""
    try:
        first, second = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x240, got {text!r}") from None
    if first < 1 or second < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return first, second


def port_number(text: str) -> int:
    value = at_least_one(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"ports go up to 65535, got {value}")
    return value


def user_and_password(text: str) -> tuple[str, str]:
    """'user:pass' -> ('user', 'pass')."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("expected USER:PASS")
    return user, password


class CommandParser(argparse.ArgumentParser):
    """argparse whose errors follow the commands' rule: one ``error: ...`` line and where help
    is, exit status 2, instead of the usage block (a dozen lines for app.py) above the error.
    Subcommands' parsers (``add_subparsers``) are of this class too: argparse makes them with
    the parent's class, so ``train.py fit --bad`` points at ``python train.py fit --help``."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())  # argparse wraps long choice lists over lines
        self.exit(EXIT_USAGE, f"error: {message}\n(see: python {self.prog} --help)\n")


def check_port_free(host: str, port: int) -> None:
    """Bind ``host``:``port`` once and let it go, so a port that is taken (or a host that is not
    this machine's) is one ServeError line before any slow setup, not a traceback after the
    model has loaded. SO_REUSEADDR as the web server (uvicorn) sets it: a port a stopped server
    left in TIME_WAIT counts as free, as it is for the server."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"--host {host}: unknown host ({exc.strerror})") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ServeError(f"cannot serve on {host}:{port}: {_bind_reason(exc, host)}") from exc


def _bind_reason(exc: OSError, host: str) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the port is already in use (another server running? pick another --port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine (--host)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges; pick another --port)"
    return exc.strerror or str(exc)
