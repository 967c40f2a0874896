"""Typed errors shared by every part of the recognizer.

Each error also subclasses the matching built-in (as PyAV does), so callers that only know
``ValueError`` or ``ConnectionError`` still catch them. Library code raises these; only the
command-line entry points turn them into one line on stderr and a non-zero exit.
"""

from __future__ import annotations


class RecognizerError(Exception):
    """Base class of every error this project raises on purpose."""


class CheckpointError(RecognizerError, ValueError):
    """A model file that is missing, corrupt, truncated or not written by this code."""


class ContractMismatch(RecognizerError, ValueError):
    """Run-time preprocessing (flow method, input size, ...) differs from the model's contract."""


class SourceError(RecognizerError, OSError):
    """A video source that cannot be opened or read (missing file, bad URL, no camera)."""


class SourceDisconnected(SourceError, ConnectionError):
    """A live source that was open and stopped delivering frames."""


class EngineError(RecognizerError, RuntimeError):
    """An inference backend that is unavailable or an engine that cannot be built or loaded."""


class ServeError(RecognizerError, OSError):
    """The page cannot be served where asked: the port is taken, or the host is not this machine."""


class DataError(RecognizerError, ValueError):
    """A training or calibration data source that is empty or malformed."""


class SplitError(DataError):
    """A dataset's split or class list (UCF101's classInd.txt and train/test lists, HMDB51's
    <class>_test_splitN.txt) that is missing, malformed or names videos that are not there."""


class DistributedError(RecognizerError, RuntimeError):
    """A torchrun launch this run cannot train under: malformed RANK/WORLD_SIZE/LOCAL_RANK, a
    world size that does not divide the batch, fewer GPUs than local ranks."""
