"""Engines build prefixes: the ``Engine`` protocol and how to pick one by name."""

from __future__ import annotations

from cema.engines.base import Engine, NullReporter, Reporter
from cema.errors import EngineUnavailableError

ENGINES = ("rattler", "micromamba")


def get_engine(name: str = "rattler") -> Engine:
    """The engine called ``name`` (``rattler``, the embedded default, or ``micromamba``)."""
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


__all__ = ["ENGINES", "Engine", "NullReporter", "Reporter", "get_engine"]
