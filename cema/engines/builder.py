"""The builder seam: one prefix's conda layer into staging, and progress of a sync."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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


__all__ = [
    "BuildStep",
    "Builder",
    "NullReporter",
    "Reporter",
]
