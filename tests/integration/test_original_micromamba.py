"""The seed's own flow, for real: an env made by the original's micromamba script, then used
through the original API (issue #16, "The seed's own flow").

The original Cema made every env with a bash script of this shape (its ``CommandGenerator``):
``cd ROOT``, ``export MAMBA_ROOT_PREFIX=ROOT``, ``eval "$(bin/micromamba shell hook -s posix)"``,
``micromamba --rc-file ROOT/.mambarc create -n NAME python=X -y``, ``micromamba activate NAME``,
``micromamba --rc-file ROOT/.mambarc install ... -y``, then the user's commands. Here a REAL
micromamba 2 runs that script (offline, on the local test channel) under the root
``EnvironmentManager(ROOT)`` uses, and the original API then finds that env by name, launches it
and calls into it. Skipped, with the reason, where there is no real micromamba.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cema.environment_manager import EnvironmentManager
from cema.errors import EngineUnavailableError
from cema.external_environment import ExternalEnvironment
from tests import channel_builder
from tests.integration.micromamba_fixtures import find_real_micromamba, real_micromamba_behind_home

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the seed's flow is bash")

#: the env the seed's script makes
NAME = "seedenv"
SCRIPT_TIMEOUT_S = 300.0
PLUGIN = '''\
"""A plugin the original API imports into the micromamba-made env."""

import os
import sys

import cemademo


def add(a, b):
    return a + b


def where():
    return {"prefix": sys.prefix, "conda_prefix": os.environ.get("CONDA_PREFIX"),
            "executable": sys.executable, "cemademo": cemademo.__version__}
'''


@pytest.fixture(autouse=True)
def _restore_cema_logger() -> Iterator[None]:
    """The original API sets the ``cema`` logger up (console, level): undo it after each test."""
    cema_log = logging.getLogger("cema")
    level, handlers = cema_log.level, list(cema_log.handlers)
    yield
    cema_log.setLevel(level)
    cema_log.handlers[:] = handlers


def pip_stand_in() -> channel_builder.Package:
    """An empty ``pip``: micromamba adds ``pip`` to every ``python`` it installs (2.8.1 does so
    even with ``add_pip_as_python_dependency: false``), and the local channel has none."""
    marker = channel_builder.PackageFile(path="share/cema-test-pip.txt", content=b"stand-in\n")
    return channel_builder.Package(name="pip", version="24.0", noarch="generic", files=(marker,))


@pytest.fixture(scope="module")
def seed_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local test channel (``python`` wraps the host interpreter), plus ``pip``."""
    folder = tmp_path_factory.mktemp("seed-channel")
    return channel_builder.build_local_channel(folder, extra=[pip_stand_in()])


@pytest.fixture
def root(tmp_path: Path, seed_channel: Path) -> Path:
    """``ROOT`` as the original laid it out: ``bin/micromamba`` (the real one, with a HOME of
    its own) and a ``.mambarc`` naming the channel, offline."""
    binary, why_not = find_real_micromamba()
    if binary is None:
        pytest.skip(why_not)
    folder = tmp_path / "conda root"
    real_micromamba_behind_home(folder / "bin", binary)
    (folder / ".mambarc").write_text(
        f"channels:\n- {seed_channel.as_uri()}\noffline: true\n", encoding="utf-8"
    )
    return folder


def seed_script(root: Path, cwd: Path) -> str:
    """The original ``create`` script (its shell hook, create, activate, install), then a user
    command, exactly as the seed's ``CommandGenerator`` wrote it (plus ``--offline``)."""
    python = "{}.{}".format(*sys.version_info[:2])
    rc = f'--rc-file "{root / ".mambarc"}"'
    lines = [
        "set -e",
        f'cd "{root}"',
        f'export MAMBA_ROOT_PREFIX="{root}"',
        'eval "$(bin/micromamba shell hook -s posix)"',
        f'cd "{cwd}"',
        f"micromamba {rc} create -n {NAME} python={python} -y --offline",
        f"micromamba activate {NAME}",
        f"micromamba {rc} install cemademo==2.0 cemahello -y --offline",
        "cemahello",  # the user's command, in the activated env
        'python -c "import sys, cemademo; print(sys.prefix, cemademo.__version__)"',
    ]
    return "\n".join(lines) + "\n"


def run_seed_script(root: Path, cwd: Path) -> list[str]:
    home = root / "bin" / "home"  # the wrapper's HOME: the hooked function calls the binary
    environ = {"PATH": os.defpath, "HOME": str(home), "LANG": "C.UTF-8"}
    result = subprocess.run(
        ["bash", "-c", seed_script(root, cwd)],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, (
        f"the seed's script failed ({result.returncode}):\n{shlex.quote(result.stdout)}\n"
        f"{result.stderr}"
    )
    return result.stdout.strip().splitlines()


def test_an_env_made_by_the_seeds_micromamba_script_is_launched_and_called(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    out = run_seed_script(root, cwd)
    prefix = root / "envs" / NAME
    assert (prefix / "conda-meta").is_dir() and not prefix.is_symlink()
    records = sorted(p.name.rsplit("-", 2)[0] for p in (prefix / "conda-meta").glob("*.json"))
    assert records == ["cemademo", "cemahello", "pip", "python"]
    assert out[-2] == f"cemahello 1.0 installed in {prefix}"  # the user's command
    assert out[-1] == f"{prefix} 2.0"

    plugin = cwd / "plugin.py"
    plugin.write_text(PLUGIN, encoding="utf-8")
    manager = EnvironmentManager(tmp_path / "elsewhere")
    manager.setCondaPath(root)  # the original: the root that holds bin/micromamba
    try:
        assert manager.environmentExists(NAME)
        env = manager.create(NAME)  # an existing env: found, not made again
        assert isinstance(env, ExternalEnvironment) and manager.environments[NAME] is env
        assert manager.create(NAME, {"conda": ["cemahello"]}) is env
        assert env.prefix == prefix
        env.launch()
        assert env.launched() and env.process is not None
        # the root stays micromamba's: nothing of a Cema store (pins, receipts) is written there
        assert sorted(p.name for p in root.iterdir()) == [".mambarc", "bin", "envs", "pkgs"]
        module = env.importModule(str(plugin))
        assert module.add(2, 3) == 5
        seen = module.where()
        assert seen["prefix"] == str(prefix) and seen["conda_prefix"] == str(prefix)
        assert Path(seen["executable"]).parent == prefix / "bin"
        assert seen["cemademo"] == "2.0"
        assert env.execute(str(plugin), "add", [1, 1]) == 2
        with manager.executeCommands(NAME, ["echo $CONDA_PREFIX", "cemahello"]) as process:
            assert process.stdout is not None
            lines = [line.strip() for line in process.stdout]
        assert lines == [str(prefix), f"cemahello 1.0 installed in {prefix}"]
        # install: the original's script again (hook, activate, micromamba install), same prefix
        monkeypatch.setenv("HOME", str(root / "bin" / "home"))  # the hooked function's HOME
        out = manager.install(NAME, {"conda": ["cemademo==1.0"]})
        assert isinstance(out, list) and all(isinstance(line, str) for line in out)
        assert sorted(p.name for p in (prefix / "conda-meta").glob("cemademo-*.json")) == [
            "cemademo-1.0-py_0.json"
        ]
        assert env.execute(str(plugin), "add", [2, 2]) == 4  # the worker still runs
        check = 'python -c "import cemademo; print(cemademo.__version__)"'
        with env.executeCommands([check]) as process:
            assert process.stdout is not None
            assert [line.strip() for line in process.stdout] == ["1.0"]
        env.exit()
        assert not env.launched() and NAME not in manager.environments
    finally:
        manager.exit()
    # nothing of Cema's own was written into the micromamba root's env
    assert sorted(p.name for p in (prefix / "conda-meta").iterdir() if p.suffix != ".json") == [
        "history"
    ]
    # a new manager on the same root finds it again (the original: a later session)
    again = EnvironmentManager(root).create(NAME)
    assert isinstance(again, ExternalEnvironment) and again.prefix == prefix


def test_install_into_a_micromamba_env_without_its_micromamba_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "root"
    (folder / "envs" / NAME / "conda-meta").mkdir(parents=True)  # as micromamba leaves it
    manager = EnvironmentManager(folder)
    assert isinstance(manager.create(NAME), ExternalEnvironment)
    with pytest.raises(EngineUnavailableError, match="made by micromamba"):
        manager.install(NAME, {"conda": ["cemademo"]})
