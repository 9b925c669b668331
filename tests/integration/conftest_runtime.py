"""Helpers for the worker runtime tests: host interpreters, uv venvs, polling with deadlines."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from cema.runtime import Worker

DATA = Path(__file__).resolve().parents[1] / "data" / "runtime"
BASIC = DATA / "basic.py"
#: interpreters the server must run under; the matrix runs the two the issue names
MATRIX_VERSIONS = ("3.10", "3.12")
VENV_TIMEOUT_S = 120.0
#: how long a test waits for something that should happen at once (a log line, a death)
EVENTUALLY_S = 10.0

StartWorker = Callable[..., Worker]


@cache
def find_python(version: str) -> Path | None:
    """A host interpreter of ``version``: pyenv's, else one on PATH."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for candidate in sorted(glob.glob(str(root / "versions" / f"{version}.*" / "bin" / "python3"))):
        return Path(candidate)
    found = shutil.which(f"python{version}")
    return Path(found) if found else None


def uv_binary() -> str:
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin
    except ImportError:
        pytest.skip("uv is not available")
    return str(find_uv_bin())


def make_venv(folder: Path, version: str, *packages: str) -> Path:
    """A uv venv from the host's ``version`` interpreter (with ``packages``); its python."""
    base = find_python(version)
    if base is None:
        pytest.skip(f"no Python {version} interpreter on this machine (pyenv or PATH)")
    uv = uv_binary()
    subprocess.run(
        [uv, "venv", "-q", "-p", str(base), str(folder)],
        check=True,
        timeout=VENV_TIMEOUT_S,
        capture_output=True,
    )
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if packages:
        proc = subprocess.run(
            [uv, "pip", "install", "-q", "-p", str(python), *packages],
            check=False,
            timeout=VENV_TIMEOUT_S,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot install {packages} into a {version} venv: {proc.stderr[-500:]}")
    return python


def worker_env(python: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """An activated venv's environment, as the core computes one for a prefix."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["VIRTUAL_ENV"] = str(python.parent.parent)
    env["PATH"] = os.pathsep.join([str(python.parent), env.get("PATH", "")])
    env.update(extra or {})
    return env


def eventually(check: Callable[[], bool], *, within_s: float = EVENTUALLY_S) -> bool:
    """Poll ``check`` until it holds or the deadline passes (no fixed sleeps in tests)."""
    deadline = time.monotonic() + within_s
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)


def process_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (a zombie nobody reaps counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def shm_segments() -> set[str]:
    """Cema's shared-memory segments that exist right now (Linux)."""
    if not sys.platform.startswith("linux"):
        return set()
    return {name for name in os.listdir("/dev/shm") if name.startswith("cema_")}
