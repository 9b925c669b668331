"""The original's main conda env (issue #12): ``EnvironmentManager(condaPath,
mainCondaEnvironmentPath=PREFIX)`` then ``mainEnvironment.install(deps)`` (or
``install(mainEnvironment.name, deps)``) installs conda packages into PREFIX.

The original ran its install script for that env: ``cd ROOT``, ``export MAMBA_ROOT_PREFIX=ROOT``,
``eval "$(bin/micromamba shell hook -s posix)"``, ``micromamba activate PREFIX``,
``micromamba --rc-file ROOT/.mambarc install ... -y``, then ``pip install ...``. Here a REAL
micromamba 2 makes the main env (``create -p PREFIX python``) and runs that script, offline, on
the local test channel. Skipped, with the reason, where there is no real micromamba.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cema.environment_manager import EnvironmentManager
from cema.errors import EngineUnavailableError, SpecError
from tests import channel_builder
from tests.integration.micromamba_fixtures import find_real_micromamba, real_micromamba_behind_home
from tests.integration.test_original_micromamba import pip_stand_in

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the original's flow is bash")

CREATE_TIMEOUT_S = 300.0


@pytest.fixture(autouse=True)
def _restore_cema_logger() -> Iterator[None]:
    """The original API sets the ``cema`` logger up (console, level): undo it after each test."""
    cema_log = logging.getLogger("cema")
    level, handlers = cema_log.level, list(cema_log.handlers)
    yield
    cema_log.setLevel(level)
    cema_log.handlers[:] = handlers


@pytest.fixture(scope="module")
def main_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local test channel (``python`` wraps the host interpreter), plus a stand-in ``pip``."""
    return channel_builder.build_local_channel(
        tmp_path_factory.mktemp("main-channel"), extra=[pip_stand_in()]
    )


@pytest.fixture
def root(tmp_path: Path, main_channel: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``ROOT`` as the original laid it out: ``bin/micromamba`` (the real one, behind a HOME of
    its own, which the hooked shell function gets too) and an offline ``.mambarc``."""
    binary, why_not = find_real_micromamba()
    if binary is None:
        pytest.skip(why_not)
    folder = tmp_path / "conda root"
    real_micromamba_behind_home(folder / "bin", binary)
    (folder / ".mambarc").write_text(
        f"channels:\n- {main_channel.as_uri()}\noffline: true\n", encoding="utf-8"
    )
    monkeypatch.setenv("HOME", str(folder / "bin" / "home"))
    return folder


def make_main_env(root: Path, prefix: Path) -> None:
    """``micromamba create -p PREFIX python=X`` with the root's micromamba and ``.mambarc``."""
    python = "{}.{}".format(*sys.version_info[:2])
    argv = [str(root / "bin" / "micromamba"), "--rc-file", str(root / ".mambarc")]
    argv += ["create", "-r", str(root), "-p", str(prefix), f"python={python}", "-y", "--offline"]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=CREATE_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert (prefix / "conda-meta").is_dir()


def records(prefix: Path) -> list[str]:
    return sorted(p.name.rsplit("-", 2)[0] for p in (prefix / "conda-meta").glob("*.json"))


def test_main_environment_install_puts_conda_packages_into_the_main_conda_env(
    root: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "main env"
    make_main_env(root, prefix)
    assert records(prefix) == ["pip", "python"]
    manager = EnvironmentManager(root, mainCondaEnvironmentPath=prefix)
    lines = manager.mainEnvironment.install({"conda": ["cemahello"]})
    assert isinstance(lines, list) and all(isinstance(line, str) for line in lines)
    hello = prefix / "bin" / "cemahello"
    assert hello.is_file()
    ran = subprocess.run([str(hello)], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == f"cemahello 1.0 installed in {prefix}"
    assert records(prefix) == ["cemahello", "pip", "python"]

    # the original's other entry point: install(mainEnvironment.name, ...), trailing slash too
    main_name = str(prefix) + os.sep
    manager.install(main_name, {"conda": ["cemademo==1.0"]})
    assert records(prefix) == ["cemademo", "cemahello", "pip", "python"]
    check = [str(prefix / "bin" / "python"), "-c", "import cemademo; print(cemademo.__version__)"]
    assert subprocess.run(check, capture_output=True, text=True, check=True).stdout == "1.0\n"
    # nothing of Cema's own: no env was made, the root stays micromamba's
    assert manager.environments == {}
    assert sorted(p.name for p in root.iterdir()) == [".mambarc", "bin", "pkgs"]
    # install(None, ...) is still "this Python environment": conda refused
    with pytest.raises(SpecError, match="Conda dependencies can only be installed"):
        manager.install(None, {"conda": ["cemahello"]})


def test_the_main_env_script_has_the_originals_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hook, ``activate PREFIX``, ``micromamba --rc-file ROOT/.mambarc install``, then pip."""
    root, prefix = tmp_path / "root", tmp_path / "main"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "micromamba").write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    ran: list[list[str]] = []

    def run(self: EnvironmentManager, commands: list[str], what: object, where: str) -> list[str]:
        ran.append(commands)
        return []

    monkeypatch.setattr(EnvironmentManager, "_run_streamed", run)
    manager = EnvironmentManager(root, mainCondaEnvironmentPath=prefix)
    deps = {
        "conda": ["cemahello", {"name": "cemademo", "dependencies": False}],
        "pip": ["tifffile", {"name": "imageio", "dependencies": False}],
    }
    manager.mainEnvironment.install(deps, ["echo done"])
    rc = f'micromamba --rc-file "{root / ".mambarc"}"'
    assert ran == [
        [
            f'cd "{root}"',
            f'export MAMBA_ROOT_PREFIX="{root}"',
            'eval "$(bin/micromamba shell hook -s posix)"',
            f'cd "{Path.cwd()}"',
            f'micromamba activate "{prefix}"',
            f"{rc} install cemahello -y",
            f"{rc} install --no-deps cemademo -y",
            "pip install tifffile",
            "pip install --no-deps imageio",
            "echo done",
        ]
    ]
    # pip entries alone, without a micromamba: that prefix's own pip
    (root / "bin" / "micromamba").unlink()
    ran.clear()
    manager.install(str(prefix), {"pip": ["tifffile"]})
    assert ran == [[f"{prefix / 'bin' / 'python'} -m pip install tifffile"]]
    with pytest.raises(EngineUnavailableError, match="main environment"):
        manager.mainEnvironment.install({"conda": ["cemahello"]})


def test_without_a_main_conda_env_install_stays_in_this_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []

    def run(self: EnvironmentManager, commands: list[str], what: object, where: str) -> list[str]:
        ran.append(commands)
        return []

    monkeypatch.setattr(EnvironmentManager, "_run_streamed", run)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())  # "pip is here"
    manager = EnvironmentManager(tmp_path / "root")
    with pytest.raises(SpecError, match="Conda dependencies can only be installed"):
        manager.mainEnvironment.install({"conda": ["cemahello"]})
    assert ran == []
    manager.mainEnvironment.install({"pip": ["tifffile"]})
    assert ran == [[f"{sys.executable} -m pip install tifffile"]]
