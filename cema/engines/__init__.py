"""Engines: the solver and builder seams, and how to pick a builder by name."""

from __future__ import annotations

from cema.engines.builder import Builder, BuildStep, NullReporter, Reporter
from cema.engines.solver import Solver, default_solver
from cema.errors import EngineUnavailableError

ENGINES = ("rattler", "micromamba")


def get_builder(name: str = "rattler") -> Builder:
    """The builder called ``name`` (``rattler``, the embedded default, or ``micromamba``)."""
    if name == "rattler":
        from cema.engines.rattler import RattlerEngine

        return RattlerEngine()
    if name == "micromamba":
        from cema.engines.micromamba import MicromambaEngine

        return MicromambaEngine()
    raise EngineUnavailableError(
        f"the {name!r} engine is not available in this version of Cema.",
        hint=f"use one of: {', '.join(ENGINES)}.",
    )


__all__ = [
    "ENGINES",
    "BuildStep",
    "Builder",
    "NullReporter",
    "Reporter",
    "Solver",
    "default_solver",
    "get_builder",
]
