"""Where Cema keeps things by default: the user cache dir, ``$CEMA_HOME`` first."""

from __future__ import annotations

import os
import sys
from pathlib import Path


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
