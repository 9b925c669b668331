"""The builder seam: one prefix's conda layer into staging, and progress of a lock and sync."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cema.model.lock import CondaRecord


class Reporter(Protocol):
    """Progress of a lock and a sync, as events; the CLI draws them on a TTY (``cli/progress``).

    Builders may call the download and phase events from other threads.
    """

    def solving(self, *, env: str, platform: str) -> None:
        """Resolving ``env`` for ``platform`` begins."""

    def solved(self, *, env: str, platform: str, seconds: float) -> None:
        """``env`` is resolved for ``platform``."""

    def building(self, *, env: str) -> None:
        """Building a prefix of ``env`` begins (conda layer, pip layer, install commands)."""

    def built(self, *, env: str, seconds: float) -> None:
        """The prefix of ``env`` is published."""

    def start(self, *, total: int, label: str) -> None:
        """A phase with ``total`` steps begins (a builder linking packages)."""

    def advance(self, *, step: str) -> None:
        """One step of the current phase is done."""

    def finish(self) -> None:
        """The current phase is over (also called when it never started)."""

    def downloading(self, *, package: str, done: int, total: int | None) -> None:
        """``done`` bytes of ``package``'s archive are in (of ``total``, when known)."""

    def downloaded(self, *, package: str) -> None:
        """The archive of ``package`` is in."""


class NullReporter:
    """A reporter that shows nothing (the library default; a base to override events of)."""

    def solving(self, *, env: str, platform: str) -> None:
        """Ignore the solve."""

    def solved(self, *, env: str, platform: str, seconds: float) -> None:
        """Ignore its end."""

    def building(self, *, env: str) -> None:
        """Ignore the build."""

    def built(self, *, env: str, seconds: float) -> None:
        """Ignore its end."""

    def start(self, *, total: int, label: str) -> None:
        """Ignore the phase."""

    def advance(self, *, step: str) -> None:
        """Ignore the step."""

    def finish(self) -> None:
        """Ignore the end."""

    def downloading(self, *, package: str, done: int, total: int | None) -> None:
        """Ignore the bytes."""

    def downloaded(self, *, package: str) -> None:
        """Ignore the download."""


def each_solve(reporter: Reporter | None, env: str, platforms: Iterable[str]) -> Iterator[str]:
    """``platforms``, each reported solving until the next is asked for (solved if no error)."""
    for platform in platforms:
        started = time.monotonic()
        if reporter is not None:
            reporter.solving(env=env, platform=platform)
        yield platform
        if reporter is not None:
            reporter.solved(env=env, platform=platform, seconds=time.monotonic() - started)


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
    #: ``hardlink``: files shared with the package cache; ``copy``: files of the prefix's own
    link: str = "hardlink"


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
    "each_solve",
]
