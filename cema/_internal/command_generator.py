"""The original API's command sets (``Commands``) and the shell script that runs them."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypedDict

from cema.errors import EngineUnavailableError, SpecError

__all__ = [
    "ERROR_MESSAGE",
    "Commands",
    "CommandsDict",
    "commands_for_platform",
    "micromamba_install_commands",
    "micromamba_of",
    "need_micromamba",
    "pip_commands",
    "prefix_python",
    "script_argv",
]

#: what a failing command prints before the script exits 1 (the original's words)
ERROR_MESSAGE = "Errors encountered during execution. Exited with status:"
PLATFORM_KEYS = ("all", "linux", "mac", "windows")


class CommandsDict(TypedDict, total=False):
    """Commands per platform: ``all`` first, then those of this OS."""

    all: list[str]
    linux: list[str]
    mac: list[str]
    windows: list[str]


Commands = CommandsDict | Mapping[str, Sequence[str]] | Sequence[str]


def _platform_key() -> str:
    return {"darwin": "mac", "win32": "windows"}.get(sys.platform, "linux")


def _strings(value: object, what: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SpecError(
            f"{what} must be a list of commands, not {type(value).__name__}.",
            hint='write ["command", ...] or {"all": [...], "linux": [...], ...}.',
        )
    if not all(isinstance(item, str) for item in value):
        raise SpecError(f"{what} must hold strings only.", hint="write each command as a string.")
    return list(value)


def normalized(commands: Commands | None, what: str = "the commands") -> dict[str, list[str]]:
    """``commands`` as ``{"all"|"linux"|"mac"|"windows": [...]}`` (a list means ``all``)."""
    if commands is None:
        return {}
    if isinstance(commands, Mapping):
        unknown = sorted(set(commands) - set(PLATFORM_KEYS))
        if unknown:
            raise SpecError(
                f"unknown key(s) {', '.join(map(repr, unknown))} in {what}.",
                hint="use 'all', 'linux', 'mac' or 'windows'.",
            )
        return {key: _strings(value, f"{what}[{key!r}]") for key, value in commands.items()}
    return {"all": _strings(commands, what)} if commands else {}


def commands_for_platform(commands: Commands | None, what: str = "the commands") -> list[str]:
    """The ``all`` commands, then those for this OS."""
    sets = normalized(commands, what)
    return [*sets.get("all", ()), *sets.get(_platform_key(), ())]


def script_argv(commands: Sequence[str]) -> list[str]:
    """``/bin/bash`` (PowerShell on Windows) running ``commands``, stopping at the first failure
    with the original message and exit status 1."""
    if sys.platform == "win32":
        check = f'if (! $?) {{ Write-Output "{ERROR_MESSAGE} $LASTEXITCODE"; exit 1 }}'
        body = "\n".join(f"{command}\n{check}" for command in commands)
        return ["powershell", "-NoProfile", "-ExecutionPolicy", "ByPass", "-Command", body]
    check = f'status=$?; if [ $status -ne 0 ]; then echo "{ERROR_MESSAGE} $status"; exit 1; fi'
    return ["/bin/bash", "-c", "\n".join(f"{command}\n{check}" for command in commands)]


def micromamba_install_commands(
    root: Path, name: str, conda: Sequence[Sequence[str]], pip: Sequence[Sequence[str]]
) -> list[str]:
    """The original's install script for env ``name`` (or a prefix path) of the micromamba of
    ``root`` (:func:`micromamba_of`): its shell hook, ``micromamba activate``, ``micromamba
    --rc-file ROOT/.mambarc install ... -y`` (``conda``: with dependencies, then ``--no-deps``),
    ``pip install`` likewise (``pip``)."""
    rc = f'micromamba --rc-file "{root / ".mambarc"}"'
    if sys.platform == "win32":  # pragma: no cover - the original's PowerShell hook
        hook = [
            f'Set-Location -Path "{root}"',
            f'$Env:MAMBA_ROOT_PREFIX="{root}"',
            ".\\micromamba.exe shell hook -s powershell | Out-String | Invoke-Expression",
            f'Set-Location -Path "{Path.cwd()}"',
        ]
    else:
        hook = [
            f'cd "{root}"',
            f'export MAMBA_ROOT_PREFIX="{root}"',
            'eval "$(bin/micromamba shell hook -s posix)"',
            f'cd "{Path.cwd()}"',
        ]
    commands = [*hook, f'micromamba activate "{name}"']
    for option, names in zip(("", " --no-deps"), conda, strict=True):
        if names:
            commands.append(f"{rc} install{option} {' '.join(names)} -y")
    for option, names in zip(("", " --no-deps"), pip, strict=True):
        if names:
            commands.append(f"pip install{option} {' '.join(names)}")
    return commands


def micromamba_of(root: Path) -> Path:
    """The micromamba of the original's layout: ``root/bin/micromamba`` (``root/micromamba.exe``
    on Windows)."""
    return root / ("micromamba.exe" if sys.platform == "win32" else "bin/micromamba")


def prefix_python(prefix: Path) -> Path:
    """The python of the conda prefix ``prefix``."""
    return prefix / ("python.exe" if sys.platform == "win32" else "bin/python")


def need_micromamba(root: Path, what: str, how: str) -> None:
    """Raise unless the original's micromamba of ``root`` (:func:`micromamba_of`) is there."""
    binary = micromamba_of(root)
    if not binary.is_file():
        raise EngineUnavailableError(
            f"installing into {what} needs micromamba, and {binary} is absent.",
            hint=f"a micromamba at {binary} ({how}) runs the original's install script.",
        )


def pip_commands(python: Path, pip: tuple[Sequence[str], Sequence[str]]) -> list[str]:
    """``python -m pip install`` of ``pip`` (names with their dependencies, then ``--no-deps``
    ones), one command line per non-empty set."""
    commands = []
    for options, names in zip(((), ("--no-deps",)), pip, strict=True):
        if not names:
            continue
        words = [*options, *names]
        if sys.platform == "win32":  # pragma: no cover - PowerShell calls a quoted program with &
            quoted = " ".join("'" + word.replace("'", "''") + "'" for word in words)
            commands.append(f"& '{python}' -m pip install {quoted}")
        else:
            commands.append(f"{shlex.quote(str(python))} -m pip install {shlex.join(words)}")
    return commands
