"""The seams every engine and progress display implements (small keyword-only protocols)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cema.lock import CondaRecord


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


class Engine(Protocol):
    """Solves conda specs and builds conda prefixes."""

    name: str

    def solve(
        self,
        *,
        specs: Sequence[str],
        channels: Sequence[str],
        platform: str,
        locked: Sequence[CondaRecord] = (),
    ) -> list[CondaRecord]:
        """Resolve ``specs`` for ``platform`` from ``channels`` (URLs or absolute paths)."""
        ...

    def find(
        self,
        *,
        spec: str,
        channels: Sequence[str],
        platform: str,
        locked: Sequence[CondaRecord] = (),
    ) -> CondaRecord | None:
        """The record for ``spec`` alone (no dependencies): locked first, by channel priority."""
        ...

    def install(
        self,
        *,
        records: Sequence[CondaRecord],
        staging: Path,
        final: Path,
        package_cache: Path,
        platform: str,
        reporter: Reporter,
    ) -> None:
        """Build the prefix in ``staging`` with ``final`` patched in, ready to be renamed."""
        ...
