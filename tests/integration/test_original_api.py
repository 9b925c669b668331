"""The original Cema API (``cema.environment_manager`` and its siblings), as its users wrote it.

A port of the original integration test plus each behaviour of the legacy layer, on the real
embedded engine and the local test channel, with real worker processes.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Iterator
from multiprocessing.connection import Client
from pathlib import Path
from typing import Any

import pytest

from cema._internal.dependency_manager import Dependencies
from cema._internal.exceptions import ExecutionException, IncompatibilityException
from cema.environment_manager import EnvironmentManager
from cema.errors import CemaError, WorkerError
from cema.external_environment import ExternalEnvironment
from cema.internal_environment import InternalEnvironment
from cema.model.spec import current_platform

PROBE = Path(__file__).resolve().parents[1] / "data" / "manager" / "probe.py"


@pytest.fixture(autouse=True)
def _restore_cema_logger() -> Iterator[None]:
    """The original API sets the ``cema`` logger up (console, level): undo it after each test."""
    cema_log = logging.getLogger("cema")
    level, handlers = cema_log.level, list(cema_log.handlers)
    yield
    cema_log.setLevel(level)
    cema_log.handlers[:] = handlers


@pytest.fixture
def conda_root(tmp_path: Path) -> Path:
    return tmp_path / "conda root"


@pytest.fixture
def env_manager(conda_root: Path, local_channel: Path) -> Iterator[EnvironmentManager]:
    """A manager whose ``.mambarc`` names the local channel (as micromamba's would)."""
    conda_root.mkdir(parents=True)
    (conda_root / ".mambarc").write_text(f"channels:\n- {local_channel}\n")
    manager = EnvironmentManager(conda_root)
    yield manager
    for env in list(manager.environments.values()):
        env.exit()


def test_the_original_names_and_signatures() -> None:
    params = list(inspect.signature(EnvironmentManager).parameters)
    assert params == ["condaPath", "mainCondaEnvironmentPath"]
    order = {
        "create": ["environment", "dependencies", "additionalInstallCommands", "forceExternal"],
        "install": ["environmentName", "dependencies", "additionalInstallCommands"],
        "executeCommands": [
            "environmentName",
            "commands",
            "additionalActivateCommands",
            "popenKwargs",
        ],
        "environmentExists": ["environment"],
        "setCondaPath": ["condaPath"],
        "setProxies": ["proxies"],
    }
    for method, names in order.items():
        assert list(inspect.signature(getattr(EnvironmentManager, method)).parameters)[1:] == names
    from cema import EnvironmentManager as Top
    from cema import logger

    assert Top is EnvironmentManager  # `from cema import` gives the original API
    logger.setLogLevel(logging.DEBUG)
    assert logging.getLogger("cema").level == logging.DEBUG


def test_default_root_is_micromamba_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    manager = EnvironmentManager()
    assert manager.settingsManager.condaPath == tmp_path / "micromamba"
    assert manager.environments == {} and manager.installedPackages == {}
    assert isinstance(manager.mainEnvironment, InternalEnvironment)
    assert not (tmp_path / "micromamba").exists()  # nothing written until an env is made


def test_environment_creation_link_and_a_later_manager(
    env_manager: EnvironmentManager, conda_root: Path
) -> None:
    env = env_manager.create("test_env_deps", Dependencies({"conda": ["cemahello"]}))
    assert isinstance(env, ExternalEnvironment) and env.environmentManager is env_manager
    link = conda_root / "envs" / "test_env_deps"
    assert link.is_symlink() and (link / "conda-meta").is_dir()
    assert link.resolve() == env.prefix and env_manager.environmentExists(
        environment="test_env_deps"
    )
    # an existing name: the same object, new dependencies ignored
    assert env_manager.create("test_env_deps", {"conda": ["cemademo"]}) is env
    with env.executeCommands(
        ["echo $CONDA_PREFIX", "python -c 'import sys; print(sys.version_info[:2])'"]
    ) as p:
        assert p.stdout is not None
        lines = [line.strip() for line in p.stdout]
    assert lines[0] == str(env.prefix) and lines[1] == str(tuple(sys.version_info[:2]))
    later = EnvironmentManager(conda_root)
    again = later.create("test_env_deps")
    assert isinstance(again, ExternalEnvironment) and again.prefix == env.prefix


def test_dependency_installation_reaches_the_running_worker(
    env_manager: EnvironmentManager,
) -> None:
    env = env_manager.create("grow", {"conda": ["cemahello"]})
    env.launch()
    pid = env.execute(str(PROBE), "pid")
    with pytest.raises(ExecutionException):
        env.execute(str(PROBE), "version_of", ["cemademo"])
    lines = env.install({"conda": ["cemademo==2.0"]})
    assert isinstance(lines, list) and all(isinstance(x, str) for x in lines) and lines
    assert env.execute(str(PROBE), "version_of", ["cemademo"]) == "2.0"
    assert env.execute(str(PROBE), "pid") == pid
    assert (env_manager.settingsManager.condaPath / "envs" / "grow").resolve() == env.prefix


def test_internal_external_environment(env_manager: EnvironmentManager) -> None:
    env_internal = env_manager.create("test_env_internal", {})
    assert isinstance(env_internal, InternalEnvironment)
    assert env_internal is env_manager.mainEnvironment and env_internal.launched()
    env_external = env_manager.create("test_env_external", {"conda": ["cemahello"]})
    assert isinstance(env_external, ExternalEnvironment)
    forced = env_manager.create("test_env_external_forced", {}, forceExternal=True)
    assert isinstance(forced, ExternalEnvironment)
    forced.launch()
    forced.launch()  # twice is harmless
    assert forced.process is not None and forced.process.poll() is None
    process = forced.process
    forced.exit()
    assert process.poll() is not None and "test_env_external_forced" not in env_manager.environments
    env_internal.exit()
    env_external.exit()


def test_incompatible_dependencies_and_python_version(
    env_manager: EnvironmentManager, conda_root: Path
) -> None:
    other = "osx-64" if current_platform() != "osx-64" else "linux-64"
    with pytest.raises(IncompatibilityException):
        env_manager.create(
            "incompatible", {"conda": [{"name": "bla", "platforms": [other], "optional": False}]}
        )
    with pytest.raises(Exception, match=r"Python version must be greater than 3\.8"):
        env_manager.create("oldpy", {"python": "3.8.0"})
    assert not (conda_root / "envs").exists()


@pytest.mark.parametrize(
    ("deps", "commands"),
    [
        ({"conda": ["cemahello"], "npm": ["x"]}, None),
        ({"conda": ["cemahello"]}, "echo hi"),
        ({"conda": ["cemahello"]}, {"all": "echo hi"}),
        ({"conda": ["cemahello"]}, {"beos": ["x"]}),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    env_manager: EnvironmentManager, conda_root: Path, deps: Any, commands: Any
) -> None:
    with pytest.raises(CemaError):
        env_manager.create("bad", deps, commands)
    assert sorted(p.name for p in conda_root.iterdir()) == [".mambarc"]


@pytest.mark.parametrize("name", ["a/b", "..", "../up"])
def test_bad_names_are_refused(
    env_manager: EnvironmentManager, conda_root: Path, name: str
) -> None:
    with pytest.raises(CemaError, match="not a valid environment name"):
        env_manager.create(name, {"conda": ["cemahello"]})
    assert sorted(p.name for p in conda_root.iterdir()) == [".mambarc"]


def test_mambarc_modification(env_manager: EnvironmentManager) -> None:
    proxies = {"http": "http://proxy.example.com", "https": "https://proxy.example.com"}
    env_manager.setProxies(proxies)
    mambarc = Path(env_manager.settingsManager.condaPath) / ".mambarc"
    content = mambarc.read_text()
    assert (
        "http: http://proxy.example.com" in content
        and "https: https://proxy.example.com" in content
    )
    assert "channels" in content
    env = env_manager.create("proxied", {"conda": ["cemahello"]})
    assert env.environ()["HTTPS_PROXY"] == "https://proxy.example.com"
    env_manager.setProxies({})
    content = mambarc.read_text()
    assert "proxy" not in content and "channels" in content
    assert "HTTPS_PROXY" not in env.environ() or os.environ.get("HTTPS_PROXY")


MODULE = """
try:
    import cemademo
except ModuleNotFoundError:
    pass

def sum(x):
    return x[0] + x[1] + x[2]

def prod(x=[], y=1):
    return x[0] * x[1] * x[2] * y

def fail():
    raise ValueError("boom")
"""


def test_code_execution_errors_and_keywords(
    env_manager: EnvironmentManager, tmp_path: Path
) -> None:
    module_path = tmp_path / "test_module.py"
    module_path.write_text(MODULE)
    env = env_manager.create("test_env_code_exec", {"conda": ["cemademo"]})
    with pytest.raises(WorkerError, match=r"launch\(\)"):
        env.execute(str(module_path), "sum", [[1, 2, 3]])
    env.launch()
    assert env.execute(str(module_path), "sum", [[1, 2, 3]]) == 6
    assert (
        env.execute(modulePath=str(module_path), function="prod", args=[[1, 2, 3]], kwargs={"y": 2})
        == 12
    )
    module = env.importModule(modulePath=str(module_path))
    assert module.sum([1, 2, 3]) == 6 and module.prod([1, 2, 3], y=3) == 18
    with pytest.raises(ExecutionException) as info:
        env.execute(str(module_path), "fail")
    assert "boom" in str(info.value.exception) and info.value.traceback
    assert env.execute(str(module_path), "sum", [[1, 1, 1]]) == 3  # still serving
    with pytest.raises(
        Exception, match=f"Module {module_path} has no function non_existent_function."
    ):
        env.execute(str(module_path), "non_existent_function", [1])
    with pytest.raises(AttributeError, match="has no"):
        module.non_existent_function(1)
    with pytest.raises(ModuleNotFoundError):
        env.execute("non_existent_module.py", "my_function", [1])
    with pytest.raises(ModuleNotFoundError):
        env.importModule("non_existent_module.py")


def test_internal_missing_function_and_module(
    env_manager: EnvironmentManager, tmp_path: Path
) -> None:
    module_path = tmp_path / "double.py"
    module_path.write_text("def double(x):\n    return x * 2\n")
    env = env_manager.create("test_env_non_existent_function", {})
    assert env.execute(str(module_path), "double", [2]) == 4
    with pytest.raises(Exception, match="has no function"):
        env.execute(str(module_path), "non_existent_function", [1])
    with pytest.raises(AttributeError, match="has no attribute"):
        env.importModule(str(module_path)).non_existent_function(1)
    with pytest.raises(ModuleNotFoundError):
        env.importModule("non_existent_module.py")


def test_execute_commands_stops_at_the_first_failure(env_manager: EnvironmentManager) -> None:
    env_manager.create("cmds", {"conda": ["cemahello"]})
    process = env_manager.executeCommands(
        environmentName="cmds",
        commands=["echo one", "false", "echo never"],
        additionalActivateCommands={"all": ["export MARK=m"]},
        popenKwargs={},
    )
    assert process.stdout is not None
    lines = [line.strip() for line in process.stdout]
    process.wait()
    assert lines == ["one", "Errors encountered during execution. Exited with status: 1"]
    assert process.returncode == 1


def test_advanced_execution(env_manager: EnvironmentManager, tmp_path: Path) -> None:
    env = env_manager.create("advanced_test", Dependencies(conda=["cemademo"]))
    module_path = tmp_path / "test_module.py"
    module_path.write_text(
        """from multiprocessing.connection import Listener
import sys
import cemademo

with Listener(("localhost", 0)) as listener:
    print(f"Listening port {listener.address[1]}")
    with listener.accept() as connection:
        while message := connection.recv():
            if message["action"] == "execute_sum":
                connection.send(sum(message["args"]))
            if message["action"] == "exit":
                connection.send(dict(action="exited"))
                sys.exit()
"""
    )
    process = env.executeCommands([f"python -u {module_path.resolve()}"])
    port = 0
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip().startswith("Listening port "):
            port = int(line.strip().replace("Listening port ", ""))
            break
    connection = Client(("localhost", port))
    connection.send({"action": "execute_sum", "args": [1, 2, 3, 4]})
    assert connection.recv() == 10
    connection.send({"action": "exit"})
    assert connection.recv()["action"] == "exited"
    process.wait(timeout=30)
