"""The original API's ``dependencies`` dict shape (``Dependencies``, ``Dependency``), checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

from cema._internal.exceptions import IncompatibilityException
from cema.errors import SpecError
from cema.model.spec import current_platform

__all__ = [
    "Dependencies",
    "Dependency",
    "Platform",
    "check_dependencies",
    "check_platforms",
    "selected",
]

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


def check_dependencies(dependencies: Dependencies | Mapping[str, Any]) -> None:
    """The original's checks before anything runs: platforms, and no ``::`` in a pip entry."""
    check_platforms(dependencies)
    pip_names = [*selected(dependencies, "pip")[0], *selected(dependencies, "pip")[1]]
    if any("::" in name for name in pip_names):
        raise SpecError(
            'One pip dependency has a channel specifier "::". Is it a conda dependency?'
            f"\n\n({dependencies.get('pip')})",
            key="pip",
            hint="move it to the conda list, or drop the channel.",
        )


def selected(
    dependencies: Dependencies | Mapping[str, Any], manager: Literal["conda", "pip"]
) -> tuple[list[str], list[str]]:
    """The ``manager`` entries for this platform, as the original formatted them: the names to
    install with their dependencies, and those with ``dependencies: False`` (``--no-deps``).
    Entries for other platforms are left out (``check_platforms`` refuses the required ones)."""
    platform = current_platform()
    with_deps: list[str] = []
    no_deps: list[str] = []
    entries: Sequence[Any] = dependencies.get(manager) or ()
    for entry in entries:
        if isinstance(entry, str):
            with_deps.append(entry)
            continue
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if not isinstance(name, str):
            raise SpecError(
                f"each {manager} dependency is a string or a dict with a name, not {entry!r}.",
                key=manager,
            )
        platforms = entry.get("platforms") or "all"
        if platforms != "all" and platform not in platforms:
            continue
        (with_deps if entry.get("dependencies", True) else no_deps).append(name)
    return with_deps, no_deps
