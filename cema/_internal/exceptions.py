"""The original API's exceptions: ``ExecutionException`` and ``IncompatibilityException``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cema.errors import SpecError, WorkerError

__all__ = ["ExecutionException", "IncompatibilityException"]


class ExecutionException(WorkerError):
    """A function run in an env raised: ``exception`` is its message, ``traceback`` its lines."""

    def __init__(self, message: Mapping[str, Any]) -> None:
        self.exception: str | None = message.get("exception")
        self.traceback: list[str] | None = message.get("traceback")
        super().__init__(str(self.exception))


class IncompatibilityException(SpecError):
    """A required (not ``optional``) dependency is not available on this platform."""
