"""The environment variables that stand for global flags: yes/no ones, the mode, the colour."""

from __future__ import annotations

import os

from cema._paths import env_yes_no
from cema.errors import CemaError

COLORS = ("auto", "always", "never")


def env_flag(name: str) -> bool:
    """A yes/no environment variable: ``1``/``true``/``yes``/``on``, or unset/``0``/``false``..."""
    value = env_yes_no(name)
    if value is None:
        raise CemaError(
            f"{name}={os.environ[name]!r} is not a yes or no.",
            hint=f"set {name} to 1 or 0 (or unset it).",
        )
    return value


def env_mode() -> str | None:
    """The default of ``--locked``/``--frozen``: ``$CEMA_LOCKED``, ``$CEMA_FROZEN``."""
    locked, frozen = env_flag("CEMA_LOCKED"), env_flag("CEMA_FROZEN")
    if locked and frozen:
        raise CemaError(
            "CEMA_LOCKED and CEMA_FROZEN are both set.",
            hint="set one of them (--locked or --frozen on the command line wins over both).",
        )
    return "locked" if locked else "frozen" if frozen else None


def env_color() -> str:
    """The default of ``--color``: ``$CEMA_COLOR``, else ``auto``."""
    value = os.environ.get("CEMA_COLOR", "").strip().lower() or "auto"
    if value not in COLORS:
        raise CemaError(
            f"CEMA_COLOR={os.environ['CEMA_COLOR']!r} is not one of {', '.join(COLORS)}.",
            hint="set CEMA_COLOR to auto, always or never (or unset it).",
        )
    return value


def check_environment() -> None:
    """Every variable a command's defaults read, judged now: a bad one is a user error."""
    env_mode(), env_flag("CEMA_NO_PROGRESS"), env_color()
