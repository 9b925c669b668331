"""Fixtures for the micromamba engine tests: the test double, and a real micromamba 2.

The real one is ``$CEMA_MICROMAMBA``, else ``../shared/tools/micromamba/bin/micromamba`` (linux-64
only), else a ``micromamba`` on PATH, if it runs and is version 2 or newer. Tests get it behind a
two-line wrapper that gives it a HOME of its own: micromamba appends every prefix it creates to
``~/.conda/environments.txt`` and would otherwise read the developer's ``.condarc``/``.mambarc``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import SHARED
from tests.micromamba_double.fake_micromamba import write_executable

#: the micromamba built for these machines (see its README beside it)
SHARED_MICROMAMBA = SHARED / "tools" / "micromamba" / "bin" / "micromamba"
VERSION_TIMEOUT_S = 30.0


def _version(binary: Path) -> str | None:
    """``micromamba --version``, or None when it does not run."""
    try:
        out = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[-1].strip() if lines else None


@cache
def find_real_micromamba() -> tuple[Path | None, str]:
    """``(binary, "")`` for a runnable real micromamba 2, else ``(None, why not)``."""
    from cema.model.spec import current_platform

    candidates: list[tuple[str, Path]] = []
    if os.environ.get("CEMA_MICROMAMBA"):
        candidates.append(("$CEMA_MICROMAMBA", Path(os.environ["CEMA_MICROMAMBA"])))
    if current_platform() == "linux-64":
        candidates.append(("the shared build", SHARED_MICROMAMBA))
    on_path = shutil.which("micromamba")
    if on_path:
        candidates.append(("PATH", Path(on_path)))
    tried = []
    for where, binary in candidates:
        if not binary.is_file():
            tried.append(f"{binary} ({where}) is absent")
            continue
        version = _version(binary)
        if version is None:
            tried.append(f"{binary} ({where}) does not run here")
        elif not version.split(".", 1)[0].isdigit() or int(version.split(".", 1)[0]) < 2:
            tried.append(f"{binary} ({where}) is micromamba {version}, not 2 or newer")
        else:
            return binary.resolve(), ""
    if not candidates:
        tried.append(
            f"no $CEMA_MICROMAMBA, no micromamba on PATH, and {SHARED_MICROMAMBA} is for"
            " linux-64 only"
        )
    return None, "no real micromamba 2: " + "; ".join(tried)


def real_micromamba_behind_home(folder: Path, binary: Path) -> Path:
    """``folder/micromamba``: runs ``binary`` with ``HOME=folder/home`` (nothing else changes)."""
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    exe = folder / "micromamba"
    exe.write_text(
        "#!/bin/sh\n"
        "# the REAL micromamba, with a HOME of its own (written by Cema's tests)\n"
        f'HOME={shlex.quote(str(home))} exec {shlex.quote(str(binary))} "$@"\n',
        encoding="utf-8",
    )
    exe.chmod(0o755)
    return exe


@pytest.fixture(scope="session")
def micromamba_double(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``.../micromamba``: the TEST DOUBLE (tests/micromamba_double), never a real micromamba."""
    return write_executable(tmp_path_factory.mktemp("micromamba-double"))


@pytest.fixture(scope="session")
def real_micromamba(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A REAL micromamba 2 (see the module docstring); skips, saying why, when there is none."""
    binary, why_not = find_real_micromamba()
    if binary is None:
        pytest.skip(why_not)
    return real_micromamba_behind_home(tmp_path_factory.mktemp("micromamba-real"), binary)


@pytest.fixture(params=["double", "real"])
def micromamba(request: pytest.FixtureRequest, micromamba_double: Path) -> Path:
    """The micromamba under test: the test double, then the real one (skipped if absent)."""
    if request.param == "double":
        return micromamba_double
    real: Path = request.getfixturevalue("real_micromamba")
    return real
