"""The original API's finer semantics: ``install(None, ...)``, ``exit()`` and the worker's
children, ``setCondaPath``, ``attachLogHandler``; on the real engine and the local channel."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cema import logger as cema_logger
from cema.environment_manager import EnvironmentManager
from cema.errors import CemaError
from cema.external_environment import ExternalEnvironment
from cema.model.spec import current_platform
from tests.integration import test_original_api as original
from tests.integration.test_original_examples import _wheel

# the fixtures of the original-API tests: a manager on a root whose .mambarc names the channel
conda_root = original.conda_root
env_manager = original.env_manager
_restore_cema_logger = original._restore_cema_logger

ROOT = Path(__file__).resolve().parents[2]
OTHER_PLATFORM = "osx-64" if current_platform() != "osx-64" else "linux-64"

INSTALL_HERE = """
import sys
from cema.environment_manager import EnvironmentManager

manager = EnvironmentManager(sys.argv[1])
try:
    manager.install(None, {"conda": ["cemahello"]})
except Exception as exc:
    print("REFUSED:", exc)
lines = manager.install(
    environmentName=None,
    dependencies={
        "pip": [
            "cemapipdemo==1.0",
            {"name": "cemanodeps", "dependencies": False},
            {"name": "cemaelsewhere", "platforms": [sys.argv[2]], "optional": True},
        ]
    },
)
print("LINES:", type(lines).__name__, all(isinstance(line, str) for line in lines))
import cemanodeps, cemapipdemo

print("PREFIX:", sys.prefix)
print("FROM:", cemapipdemo.__file__, cemanodeps.__file__)
"""


def test_install_none_puts_pip_dependencies_into_the_running_python(
    tmp_path: Path, conda_root: Path
) -> None:
    """As the original documented: no env, so pip entries go into the current Python (with
    ``--no-deps`` for ``dependencies: False``, other platforms' optional entries left out), and
    conda entries are refused before anything runs. Run in a throwaway venv, not the test's."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    wheels = tmp_path / "wheels"
    _wheel(wheels, "cemapipdemo", "1.0", "VALUE = 1\n")
    nodeps = _wheel(wheels, "cemanodeps", "1.0", "VALUE = 2\n")
    _add_requirement(nodeps, "cema-not-anywhere")  # only --no-deps can install it offline
    script = tmp_path / "install_here.py"
    script.write_text(INSTALL_HERE)
    host_site = sysconfig.get_paths()["purelib"]  # cema's own dependencies, and pip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), host_site]),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    proc = subprocess.run(
        [str(python), str(script), str(conda_root), OTHER_PLATFORM],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "REFUSED: Conda dependencies can only be installed in a Conda environment" in out
    assert "LINES: list True" in out
    assert f"FROM: {venv}" in out.replace(str(venv.resolve()), str(venv))
    assert not (Path(host_site) / "cemapipdemo").exists()  # not the Python that ran the test
    assert not (conda_root / "envs").exists()  # and no env was made


def _add_requirement(wheel: Path, requirement: str) -> None:
    import zipfile

    name = wheel.name.split("-")[0]
    version = wheel.name.split("-")[1]
    info = f"{name}-{version}.dist-info/METADATA"
    with zipfile.ZipFile(wheel) as archive:
        files = {item: archive.read(item) for item in archive.namelist()}
    files[info] += f"Requires-Dist: {requirement}\n".encode()
    with zipfile.ZipFile(wheel, "w") as archive:
        for item, data in files.items():
            archive.writestr(item, data)


def test_pip_entries_with_a_channel_are_refused(env_manager: EnvironmentManager) -> None:
    with pytest.raises(CemaError, match='channel specifier "::"'):
        env_manager.install(None, {"pip": ["conda-forge::numpy"]})
    with pytest.raises(CemaError, match='channel specifier "::"'):
        env_manager.create("chan", {"pip": ["conda-forge::numpy"]})
    assert not env_manager.environmentExists("chan")


CHILDREN = """
import subprocess


def start(new_session=False):
    return subprocess.Popen(["sleep", "1000"], start_new_session=new_session).pid
"""


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie left for init to reap counts as gone)."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(sys.platform == "win32", reason="starts `sleep`")
def test_exit_kills_the_workers_children(
    env_manager: EnvironmentManager, tmp_path: Path, poll_until: Callable[..., Any]
) -> None:
    module = tmp_path / "children.py"
    module.write_text(CHILDREN)
    env = env_manager.create("kids", {"conda": ["cemahello"]})
    assert isinstance(env, ExternalEnvironment)
    env.launch()
    worker = env.process
    assert worker is not None
    pids = [env.execute(str(module), "start"), env.execute(str(module), "start", [True])]
    assert all(_alive(pid) for pid in pids)
    env.exit()
    assert worker.poll() is not None and "kids" not in env_manager.environments
    for pid in pids:
        poll_until(lambda pid=pid: not _alive(pid), timeout_s=30, what=f"child {pid} to end")


def test_set_conda_path_switches_the_root(
    env_manager: EnvironmentManager,
    conda_root: Path,
    local_channel: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = env_manager.create("same", {"conda": ["cemahello"]})
    env_manager.setProxies({"https": "https://proxy.example.com"})
    other = tmp_path / "other root"
    other.mkdir()
    (other / ".mambarc").write_text(f"channels:\n- {local_channel}\n")
    monkeypatch.chdir(tmp_path)
    env_manager.setCondaPath("other root")  # relative to the working directory
    settings = env_manager.settingsManager
    assert settings.condaPath == other.resolve()
    assert f'--rc-file "{other.resolve() / ".mambarc"}"' in settings.condaBinConfig
    # later calls look in the new root: the old root's env is not there ...
    assert not env_manager.environmentExists("same")
    with pytest.raises(CemaError, match="no environment named 'same'"):
        env_manager.executeCommands("same", ["true"])
    # ... so create makes it there, and it replaces the old one in `environments`
    second = env_manager.create("same", {"conda": ["cemahello"]})
    assert second is not first and env_manager.environments["same"] is second
    assert (other / "envs" / "same" / "conda-meta").is_dir()
    assert second.prefix is not None and other.resolve() in second.prefix.parents  # its store
    with env_manager.executeCommands("same", ["echo $CONDA_PREFIX"]) as process:
        assert process.stdout is not None
        assert process.stdout.read().strip() == str(second.prefix)
    # the proxies set before are kept (the new .mambarc names none), and reach the new env
    assert settings.proxies == {"https": "https://proxy.example.com"}
    assert second.environ()["HTTPS_PROXY"] == "https://proxy.example.com"
    # setProxies now writes the new root's .mambarc; the old root's is left as it was
    env_manager.setProxies({"http": "http://other.example.com"})
    assert "other.example.com" in (other / ".mambarc").read_text()
    assert "other.example.com" not in (conda_root / ".mambarc").read_text()
    # a root whose .mambarc names proxies brings them
    env_manager.setCondaPath(conda_root)
    assert settings.proxies == {"https": "https://proxy.example.com"}
    assert env_manager.environmentExists("same") and first.prefix is not None


EMITS = """
import logging


def shout(text):
    print(text, flush=True)
    return text
"""


def test_attach_log_handler_receives_cemas_records(
    env_manager: EnvironmentManager, tmp_path: Path, poll_until: Callable[..., Any]
) -> None:
    received: list[str] = []
    cema_logger.attachLogHandler(received.append, logging.DEBUG)
    assert cema_logger.getLogger().level == logging.DEBUG
    module = tmp_path / "emits.py"
    module.write_text(EMITS)
    env = env_manager.create("logged", {"conda": ["cemahello"]})
    env.launch()
    assert env.execute(str(module), "shout", ["a line printed in the env"])
    # the worker's prints (cema.worker.<name>, INFO) and Cema's own debug records
    poll_until(lambda: "a line printed in the env" in received, what="the printed line")
    assert any("worker" in line for line in received if line != "a line printed in the env")
    env.exit()
    # below the level given, nothing arrives
    count = len(received)
    logging.getLogger("cema.test").log(5, "below DEBUG")
    assert len(received) == count


FORMATS = """
import logging, os
from cema import logger

received = []
logger.attachLogHandler(received.append)
logger.logger.info("bare")
root = logging.StreamHandler(open(os.devnull, "w"))
root.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
logging.getLogger().addHandler(root)
logger.logger.info("as basicConfig")
first = logging.StreamHandler(open(os.devnull, "w"))
first.setFormatter(logging.Formatter("cema says %(message)s"))
logger.logger.handlers.insert(0, first)
logger.logger.info("as the first handler")
print(received)
"""


def test_attach_log_handler_formats_as_the_original() -> None:
    """Each record formatted as the original did: with the first ``cema`` handler's formatter,
    else the root's (``basicConfig``'s ``LEVEL:name:message``), else the bare message. In a
    fresh interpreter: pytest's own handlers sit on the root logger here."""
    proc = subprocess.run(
        [sys.executable, "-c", FORMATS],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert proc.stdout.strip() == str(
        ["bare", "INFO:cema:as basicConfig", "cema says as the first handler"]
    )


def test_pip_only_env_is_a_conda_env_with_the_hosts_python(
    env_manager: EnvironmentManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _wheel(tmp_path / "wheels", "cemapiponly", "1.0", "VALUE = 3\n")
    monkeypatch.setenv("UV_FIND_LINKS", str(tmp_path / "wheels"))
    monkeypatch.setenv("UV_NO_INDEX", "1")
    env = env_manager.create("piponly", {"pip": ["cemapiponly==1.0"]})
    assert isinstance(env, ExternalEnvironment) and env.name == "piponly"
    assert (env_manager.settingsManager.condaPath / "envs" / "piponly" / "conda-meta").is_dir()
    check = "import sys, cemapiponly; print(sys.version_info[:2], cemapiponly.VALUE)"
    with env.executeCommands(["echo $CONDA_PREFIX", f'python -c "{check}"']) as process:
        assert process.stdout is not None
        lines = process.stdout.read().split("\n")
    assert lines[:2] == [str(env.prefix), f"{tuple(sys.version_info[:2])} 3"]


def test_an_unknown_package_raises_and_links_nothing(env_manager: EnvironmentManager) -> None:
    with pytest.raises(CemaError, match="cema-no-such-package"):
        env_manager.create("unknown", {"conda": ["cema-no-such-package"]})
    assert not env_manager.environmentExists("unknown")
    assert "unknown" not in env_manager.environments


MADE_HERE = "echo $CONDA_PREFIX > made-here.txt"


@pytest.mark.parametrize(
    "commands",
    [
        ["python -c 'import cemademo'", "mkdir sub", "cd sub", MADE_HERE],
        {"all": ["python -c 'import cemademo'", "mkdir sub", "cd sub"], "linux": [MADE_HERE]}
        if sys.platform != "darwin"
        else {"all": ["python -c 'import cemademo'", "mkdir sub", "cd sub"], "mac": [MADE_HERE]},
    ],
)
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX commands")
def test_additional_install_commands_run_after_install_in_the_callers_cwd(
    env_manager: EnvironmentManager,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    commands: Any,
) -> None:
    cwd = tmp_path / "caller"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    env = env_manager.create("installcmds", {"conda": ["cemademo"]}, commands)
    # cemademo was importable: the commands ran after the install, in the activated env, in
    # the caller's working directory, as one script (the `cd` held for the next command)
    assert (cwd / "sub" / "made-here.txt").read_text().strip() == str(env.prefix)


@pytest.mark.skipif(sys.platform == "win32", reason="bash")
def test_execute_commands_is_bash_and_popen_kwargs_override(
    env_manager: EnvironmentManager, tmp_path: Path
) -> None:
    env_manager.create("shell", {"conda": ["cemahello"]})
    with env_manager.executeCommands("shell", ['[[ -n "$BASH_VERSION" ]] && echo bash']) as p:
        assert p.stdout is not None
        assert p.stdout.read() == "bash\n"  # text, stderr merged: the original's defaults
        assert p.stdin is None and p.stderr is None
    out = tmp_path / "out.txt"
    with out.open("wb") as handle:
        process = env_manager.executeCommands(
            "shell", ["pwd", "echo to-stderr >&2"], popenKwargs={"stdout": handle, "cwd": tmp_path}
        )
        process.wait()
    assert process.stdout is None
    assert out.read_text().split("\n")[:2] == [str(tmp_path), "to-stderr"]


def test_snake_case_aliases(env_manager: EnvironmentManager) -> None:
    manager = EnvironmentManager
    assert manager.environment_exists is manager.environmentExists
    assert manager.execute_commands is manager.executeCommands
    assert manager.set_conda_path is manager.setCondaPath
    assert manager.set_proxies is manager.setProxies
    assert ExternalEnvironment.import_module is ExternalEnvironment.importModule
    assert ExternalEnvironment.execute_commands is ExternalEnvironment.executeCommands
    env = env_manager.create("aliases", {}, forceExternal=True)
    env.launch(logOutputInThread=False)
    assert env.launched()


def test_set_proxies_writes_proxy_servers(env_manager: EnvironmentManager) -> None:
    import yaml

    proxies = {"http": "http://proxy.example.com:3128", "https": "https://proxy.example.com"}
    env_manager.setProxies(proxies)
    mambarc = env_manager.settingsManager.condaPath / ".mambarc"
    assert yaml.safe_load(mambarc.read_text())["proxy_servers"] == proxies
    env_manager.setProxies({})
    assert "proxy_servers" not in yaml.safe_load(mambarc.read_text())


def test_micromamba_finds_the_env_by_name(env_manager: EnvironmentManager) -> None:
    from tests.integration.micromamba_fixtures import find_real_micromamba

    binary, why = find_real_micromamba()
    if binary is None:
        pytest.skip(why)
    env = env_manager.create("byname", {"conda": ["cemahello"]})
    root = env_manager.settingsManager.condaPath
    proc = subprocess.run(
        [str(binary), "-r", str(root), "run", "-n", "byname", "cemahello"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "MAMBA_ROOT_PREFIX": str(root)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cemahello 1.0 installed in" in proc.stdout and str(env.prefix) in proc.stdout


CONSOLE = """
import logging, sys
from cema.environment_manager import EnvironmentManager

if sys.argv[1] == "configured":
    logging.basicConfig(format="app: %(message)s")
EnvironmentManager(sys.argv[2])
logging.getLogger("cema").info("a cema record")
"""


@pytest.mark.parametrize(
    ("setup", "expected"), [("bare", "a cema record"), ("configured", "app: a cema record")]
)
def test_console_output_once(tmp_path: Path, setup: str, expected: str) -> None:
    """By default Cema's records reach the console, as the original's did; once an application
    has set logging up, they go through its handlers only (not twice)."""
    proc = subprocess.run(
        [sys.executable, "-c", CONSOLE, setup, str(tmp_path / "root")],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert proc.stderr.splitlines() == [expected]
