"""This user and machine: where Cema keeps things, the platform, the project's ``cema.yaml``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cema.errors import SpecError

SPEC_FILENAME = "cema.yaml"


def default_home() -> Path:
    """``$CEMA_HOME``, else the user cache dir (``~/.cache/cema`` on Linux)."""
    home = os.environ.get("CEMA_HOME")
    if home:
        return Path(home).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "cema" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "cema"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cema"


def pyenv_versions_dir() -> Path:
    """Where pyenv keeps its interpreters: ``$PYENV_ROOT/versions``, else ``~/.pyenv/versions``."""
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"


def current_platform() -> str:
    """The conda platform string of this machine, e.g. ``linux-64`` or ``osx-arm64``."""
    if hasattr(os, "uname"):  # POSIX: what `platform.machine()` reads, without its import
        machine = os.uname().machine.lower()
    else:  # pragma: no cover - Windows
        import platform

        machine = platform.machine().lower()
    arch = {
        "x86_64": "64",
        "amd64": "64",
        "aarch64": "aarch64",
        "arm64": "arm64",
        "ppc64le": "ppc64le",
    }.get(machine, machine)
    if sys.platform.startswith("linux"):
        return f"linux-{arch}"
    if sys.platform == "darwin":
        return "osx-arm64" if arch in ("arm64", "aarch64") else "osx-64"
    if sys.platform == "win32":
        return "win-arm64" if arch in ("arm64", "aarch64") else "win-64"
    return f"{sys.platform}-{arch}"


def find_spec_file(start: Path | None = None) -> Path:
    """``cema.yaml`` in ``start`` (a file or folder, default the cwd) or its parents."""
    start = (start or Path.cwd()).resolve()
    if start.is_file() or start.suffix in (".yaml", ".yml"):
        return start
    for folder in (start, *start.parents):
        candidate = folder / SPEC_FILENAME
        if candidate.is_file():
            return candidate
    raise SpecError(
        f"no {SPEC_FILENAME} in {start} or any folder above it.",
        hint="run `cema init` to create one, or pass --project PATH.",
    )


_YES = ("1", "true", "yes", "on")
_NO = ("", "0", "false", "no", "off")


def env_yes_no(name: str) -> bool | None:
    """A yes/no environment variable: ``1``/``true``/``yes``/``on`` or unset/``0``/``false``...;
    None when it is set to anything else."""
    value = os.environ.get(name, "").strip().lower()
    return True if value in _YES else False if value in _NO else None
