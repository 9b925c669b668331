"""Shared fixtures: a hand-made local channel, real conda-forge data, stores, throwaway projects."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import pytest

import cema
from tests import channel_builder

REPO = Path(__file__).resolve().parents[1]
#: ``../shared`` beside the repository (CI has it there); ``CEMA_TEST_SHARED`` overrides it
SHARED = Path(os.environ.get("CEMA_TEST_SHARED") or REPO.parent / "shared")
CONDA_FORGE_DATA = SHARED / "testdata" / "conda-forge"
#: a CLI subprocess that takes longer than this is hung: fail instead of blocking the suite
CLI_TIMEOUT_S = 300.0
PYPI_PROBE_TIMEOUT_S = 5.0


# --- markers ------------------------------------------------------------------------------------


@cache
def _pypi_unreachable() -> str | None:
    """Why PyPI (or the configured index) cannot be reached, or None when it can."""
    index = (
        os.environ.get("UV_DEFAULT_INDEX")
        or os.environ.get("UV_INDEX_URL")
        or os.environ.get("PIP_INDEX_URL")
        or "https://pypi.org/simple/"
    )
    url = index.rstrip("/") + "/six/"
    try:
        with urllib.request.urlopen(url, timeout=PYPI_PROBE_TIMEOUT_S):
            return None
    except Exception as exc:  # any failure means: no package index here
        return f"the package index {index} is not reachable ({exc})"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``network`` tests skip (with the reason) where the package index cannot be reached."""
    if item.get_closest_marker("network") is not None:
        reason = _pypi_unreachable()
        if reason is not None:
            pytest.skip(reason)


# --- channels -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def local_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly built, indexed local channel of hand-made packages (see ``channel_builder``).

    - ``python`` (the host interpreter's version, build ``cema_host_0``, this platform): its
      prefix is a venv of the host's base interpreter (``bin/python*`` links, ``pyvenv.cfg``);
    - ``cemademo`` 1.0 and 2.0 (``noarch: python``, module ``cemademo``, ``__version__``,
      ``hello()``), depending on ``python``;
    - ``cemahello`` 1.0 (``noarch: generic``): ``bin/cemahello`` prints its install prefix
      (a text placeholder the installer replaces);
    - ``cemagate`` 1.0 (``noarch: generic``): an ``activate.d`` script that waits while
      ``$HOME/cema-test-gate/hold`` exists (to hold a sync before its receipt) and else
      exports ``CEMAGATE_ACTIVE=1``.
    """
    return channel_builder.build_local_channel(tmp_path_factory.mktemp("local-channel"))


def _require_conda_forge(part: str) -> Path:
    path = CONDA_FORGE_DATA / part
    if not path.is_dir():
        pytest.skip(
            f"{CONDA_FORGE_DATA} is absent: the real conda-forge test data lives in ../shared"
            " beside the repository (set CEMA_TEST_SHARED to use another folder)"
        )
    return path


@pytest.fixture(scope="session")
def conda_forge_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An indexed temporary copy of ``../shared/testdata/conda-forge/channel`` (skips if absent)."""
    source = _require_conda_forge("channel")
    target = tmp_path_factory.mktemp("conda-forge") / "channel"
    shutil.copytree(source, target)
    return channel_builder.index_channel(target)


@pytest.fixture(scope="session")
def conda_forge_repodata() -> Path:
    """``../shared/testdata/conda-forge/repodata/conda-forge-subchannel-py39`` (skips if absent).

    Real repodata only (no archives): for solving and locking, never for installs.
    """
    return _require_conda_forge("repodata/conda-forge-subchannel-py39")


# --- stores, projects and the CLI ----------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> cema.Store:
    """A fresh, empty store in the test's tmp dir (``run_cema`` uses the same one)."""
    return cema.Store(tmp_path / "store")


class MakeProject(Protocol):
    def __call__(self, yaml_text: str, *, folder: Path | None = None) -> Path: ...


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """``make_project(yaml_text, *, folder=None) -> folder``: write ``cema.yaml`` (dedented).

    The default folder is ``tmp_path / "project"``; ``folder`` may be relative to ``tmp_path``.
    """

    def make(yaml_text: str, *, folder: Path | None = None) -> Path:
        target = tmp_path / (folder if folder is not None else "project")
        target.mkdir(parents=True, exist_ok=True)
        (target / "cema.yaml").write_text(textwrap.dedent(yaml_text), encoding="utf-8")
        return target

    return make


def cema_environ(store_root: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a ``cema`` subprocess: ``CEMA_HOME`` is the test's store, no venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CEMA_", "CONDA_"))}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    env["CEMA_HOME"] = str(store_root)
    # keep a stray TTY check from drawing progress bars into captured output
    env["TERM"] = "dumb"
    env.update(extra or {})
    return env


def cema_argv(*args: str | os.PathLike[str]) -> list[str]:
    """``python -m cema ARGS`` with the interpreter running the tests."""
    return [sys.executable, "-m", "cema", *(str(a) for a in args)]


class RunCema(Protocol):
    def __call__(
        self,
        *args: str | os.PathLike[str],
        cwd: Path,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def cema_env(store: cema.Store) -> dict[str, str]:
    """The environment ``run_cema`` uses (for tests that start ``cema`` with ``Popen``)."""
    return cema_environ(store.root)


@pytest.fixture
def run_cema(store: cema.Store) -> RunCema:
    """``run_cema(*args, cwd, env=None, check=True)``: the real CLI in a subprocess.

    ``CEMA_HOME`` is the ``store`` fixture's folder; ``env`` adds or overrides variables. With
    ``check`` a non-zero exit fails the test showing both output streams.
    """

    def run(
        *args: str | os.PathLike[str],
        cwd: Path,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            cema_argv(*args),
            cwd=cwd,
            env=cema_environ(store.root, env),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        if proc.returncode < 0:
            # a crash is never an acceptable exit, with or without check
            pytest.fail(
                f"`cema {' '.join(map(str, args))}` was killed by signal {-proc.returncode}"
                f" (a crash, not a user error)\n--- stdout ---\n{proc.stdout}\n"
                f"--- stderr ---\n{proc.stderr}",
                pytrace=False,
            )
        if check and proc.returncode != 0:
            pytest.fail(
                f"`cema {' '.join(map(str, args))}` exited with {proc.returncode}\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
                pytrace=False,
            )
        return proc

    return run


@pytest.fixture(scope="session")
def host_site_packages() -> Callable[[], dict[str, Any]]:
    """A snapshot function of the host interpreter's site-packages (names → mtimes).

    Tests compare snapshots before and after installing into a prefix: nothing may land in the
    host interpreter (the one the local ``python`` package points at).
    """
    import sysconfig

    base = channel_builder.host_interpreter()
    out = subprocess.run(
        [str(base), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    folder = Path(out or sysconfig.get_paths()["purelib"])

    def snapshot() -> dict[str, Any]:
        if not folder.is_dir():
            return {}
        return {e.name: e.stat().st_mtime_ns for e in os.scandir(folder)}

    return snapshot


@pytest.fixture
def poll_until() -> Callable[..., Any]:
    """``poll_until(condition, *, timeout_s=60, interval_s=0.01, what="")``: the truthy value.

    Waits for a condition with a deadline (never a fixed sleep); fails the test on timeout.
    ``interval_s=0`` spins (yielding the CPU) to catch short windows.
    """
    import time

    def poll(
        condition: Callable[[], Any],
        *,
        timeout_s: float = 60.0,
        interval_s: float = 0.01,
        what: str = "",
    ) -> Any:
        end = time.monotonic() + timeout_s
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > end:
                pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what or condition}")
            if interval_s > 0:
                time.sleep(interval_s)
            else:
                os.sched_yield()

    return poll
