"""Errors the streaming runtime adds to twostream.errors' hierarchy."""

from __future__ import annotations

from twostream.errors import RecognizerError


class PipelineError(RecognizerError, RuntimeError):
    """The runtime itself went wrong: inconsistent settings, a ring read past what it holds
    (a sizing bug), or stage threads that did not stop."""
