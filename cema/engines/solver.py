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


def match_spec_problem(spec: str) -> str | None:
    """Why ``spec`` is not a conda match spec, or None: the grammar of the embedded solver.

    Every lock is solved by rattler (see ``default_solver``), so its grammar is the one a spec
    is checked against before resolving, whichever ``Solver`` is passed in.
    """
    from cema.engines.rattler import match_spec_problem as problem

    return problem(spec)


def default_solver() -> Solver:
    """The embedded solver (py-rattler): the only one, so every lock means the same."""
    from cema.engines.rattler import RattlerEngine

    return RattlerEngine()


__all__ = [
    "Solver",
    "default_solver",
    "match_spec_problem",
]
