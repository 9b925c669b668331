"""The builder seam: one prefix's conda layer into staging, and progress of a sync."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from cema.model.lock import CondaRecord


class Reporter(Protocol):
    """Progress of a sync; the CLI fills it with a progress bar on a TTY."""

    def start(self, *, total: int, label: str) -> None:
        """A phase with ``total`` steps begins."""

    def advance(self, *, step: str) -> None:
        """One step of the current phase is done."""

    def finish(self) -> None:
        """The current phase is over."""


class NullReporter:
    """A reporter that shows nothing (the library default)."""

    def start(self, *, total: int, label: str) -> None:
        """Ignore the phase."""

    def advance(self, *, step: str) -> None:
        """Ignore the step."""

    def finish(self) -> None:
        """Ignore the end."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildStep:
    """One conda prefix to build: its records, where to build it and where it will live.

    ``staging`` is a fresh folder on the same filesystem as ``final``; the builder writes the
    prefix there with ``final`` patched into every file, so that renaming ``staging`` to
    ``final`` publishes it. The sync (not the builder) renames, adds the pip layer, runs the
    install commands and writes the receipt.
    """

    env: str
    records: Sequence[CondaRecord]
    platform: str
    staging: Path
    final: Path
    #: the store's folder for this builder's package cache (its layout is the builder's own)
    package_cache: Path


class Builder(Protocol):
    """Installs a prefix's conda layer for a sync (rattler, the default, or micromamba)."""

    #: recorded in receipts (``cema list`` shows it)
    name: str

    def build(self, *, step: BuildStep, reporter: Reporter) -> None:
        """Write ``step.records`` into ``step.staging`` with ``step.final`` patched in."""
        ...


class BarReporter:
    """A one-line progress bar on stderr (only used on a TTY)."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.total = 0
        self.done = 0
        self.label = ""

    def start(self, *, total: int, label: str) -> None:
        """Begin a phase."""
        self.total, self.done, self.label = total, 0, label
        self._draw("")

    def advance(self, *, step: str) -> None:
        """One step done."""
        self.done += 1
        self._draw(step)

    def finish(self) -> None:
        """End the phase and clear the line."""
        self.stream.write("\r\033[K")
        self.stream.flush()

    def _draw(self, step: str) -> None:
        filled = int(self.WIDTH * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r\033[K{self.label} [{bar}] {self.done}/{self.total} {step}")
        self.stream.flush()


__all__ = [
    "BarReporter",
    "BuildStep",
    "Builder",
    "NullReporter",
    "Reporter",
]
