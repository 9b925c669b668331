"""An activated env as a script for the user's shell (`cema shell-hook`): bash, zsh, fish, pwsh."""

# The script holds the difference between the caller's environment and the activated one: the
# variables to set (PATH whole, already prefixed) and those to remove. ``eval`` it (bash, zsh),
# ``| source`` it (fish) or ``Invoke-Expression`` it (PowerShell) to activate the env in place.

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Shell = Literal["bash", "zsh", "fish", "powershell"]
SHELLS: tuple[Shell, ...] = ("bash", "zsh", "fish", "powershell")

#: names every shell can set without special syntax
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: the characters PowerShell reads as a single quote (doubled inside a '...' string)
_PS_QUOTES = "'\u2018\u2019\u201a\u201b"


@dataclass(frozen=True, slots=True)
class Changes:
    """What activation changes in an environment: variables set, and variables removed."""

    set: Mapping[str, str]
    unset: Sequence[str]
    #: names no shell syntax can hold portably: left out of the script
    skipped: Sequence[str] = ()


def environ_changes(before: Mapping[str, str], after: Mapping[str, str]) -> Changes:
    """The variables ``after`` sets (new or different) and those it removes, sorted by name."""
    changed = {k: v for k, v in sorted(after.items()) if before.get(k) != v}
    removed = sorted(k for k in before if k not in after)
    skipped = sorted(k for k in (*changed, *removed) if not _NAME.match(k))
    return Changes(
        set={k: v for k, v in changed.items() if _NAME.match(k)},
        unset=[k for k in removed if _NAME.match(k)],
        skipped=skipped,
    )


def fish_quote(value: str) -> str:
    """``value`` as one fish word: single quotes, backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def powershell_quote(value: str) -> str:
    """``value`` as a PowerShell single-quoted string (every kind of single quote doubled)."""
    for quote in _PS_QUOTES:
        value = value.replace(quote, quote * 2)
    return f"'{value}'"


def _posix(changes: Changes) -> list[str]:
    lines = [f"unset {name}" for name in changes.unset]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in changes.set.items()]
    if "PATH" in changes.set:
        lines.append("hash -r 2>/dev/null || true")  # forget commands found on the old PATH
    return lines


def _fish(changes: Changes, pathsep: str) -> list[str]:
    lines = [f"set -e {name}" for name in changes.unset]
    for name, value in changes.set.items():
        if name == "PATH":  # a list in fish: one word per folder
            words = " ".join(fish_quote(p) for p in value.split(pathsep) if p)
        else:
            words = fish_quote(value)
        lines.append(f"set -gx {name} {words}")
    return lines


def _powershell(changes: Changes) -> list[str]:
    lines = [
        f"Remove-Item -Path Env:{name} -ErrorAction SilentlyContinue" for name in changes.unset
    ]
    lines += [f"$env:{name} = {powershell_quote(value)}" for name, value in changes.set.items()]
    return lines


def render_hook(changes: Changes, shell: Shell, *, comment: str = "") -> str:
    """The script that applies ``changes`` in ``shell`` when evaluated there."""
    header = [f"# {line}" for line in comment.splitlines()]
    if shell in ("bash", "zsh"):
        body = _posix(changes)
    elif shell == "fish":
        body = _fish(changes, os.pathsep)
    else:
        body = _powershell(changes)
    return "\n".join([*header, *body]) + "\n"


def detect_shell(environ: Mapping[str, str]) -> Shell:
    """The shell named by ``$SHELL`` when it is one of ``SHELLS`` (else bash; on Windows,
    PowerShell)."""
    if os.name == "nt" and not environ.get("SHELL"):
        return "powershell"
    given = environ.get("SHELL", "").replace("\\", "/")
    name = given.rsplit("/", 1)[-1].lower().removesuffix(".exe")
    for shell in SHELLS:
        if name == shell or (shell == "powershell" and name == "pwsh"):
            return shell
    return "bash"


__all__ = [
    "SHELLS",
    "Changes",
    "Shell",
    "detect_shell",
    "environ_changes",
    "fish_quote",
    "powershell_quote",
    "render_hook",
]
