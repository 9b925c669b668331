"""The original API's ``dependencies`` dict shape (``Dependencies``, ``Dependency``), checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

from cema._internal.exceptions import IncompatibilityException
from cema.model.spec import current_platform

__all__ = ["Dependencies", "Dependency", "Platform", "check_platforms"]

Platform = Literal["osx-64", "osx-arm64", "win-64", "win-arm64", "linux-64", "linux-arm64"]


class _Named(TypedDict):
    name: str


class Dependency(_Named, total=False):
    """One entry given as a dict: ``name``, and where, whether optional, with its dependencies."""

    platforms: list[Platform]
    optional: bool
    dependencies: bool


class Dependencies(TypedDict, total=False):
    """``{"python": "3.12", "conda": [...], "pip": [...]}`` (and ``channels``)."""

    python: str
    conda: list[str | Dependency]
    pip: list[str | Dependency]
    channels: list[str]


def check_platforms(dependencies: Dependencies | Mapping[str, Any]) -> None:
    """Raise ``IncompatibilityException`` for a required entry not available on this platform."""
    platform = current_platform()
    for manager in ("conda", "pip"):
        entries: Sequence[Any] = dependencies.get(manager) or ()  # type: ignore[assignment]
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            platforms = entry.get("platforms") or "all"
            if platforms == "all" or platform in platforms or entry.get("optional", False):
                continue
            raise IncompatibilityException(
                f"the library {entry.get('name')} is not available on this platform "
                f"({platform}); it is only available on: {', '.join(platforms)}.",
                hint="mark it optional or give it for this platform too.",
            )
