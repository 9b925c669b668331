"""The solver seam: conda specs to exact records (``cema lock`` resolves through it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cema.model.lock import CondaRecord


class Solver(Protocol):
    """Resolves conda specs to records; the lock is the same whichever builder installs it."""

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


def default_solver() -> Solver:
    """The embedded solver (py-rattler): the only one, so every lock means the same."""
    from cema.engines.rattler import RattlerEngine

    return RattlerEngine()


__all__ = [
    "Solver",
    "default_solver",
]
