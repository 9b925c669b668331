"""Cema on a real local Ray cluster: the ``cema`` runtime_env plugin, and ``in_env``."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'cema[ray]')")
cluster_utils = pytest.importorskip("ray.cluster_utils")

import cema  # noqa: E402
from cema.errors import EnvNotFoundError, StaleLockError  # noqa: E402
from cema.ray import PLUGINS_ENV_VAR, in_env, plugin_config, runtime_env  # noqa: E402
from tests.channel_builder import index_channel, python_package, write_package  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

GREETING = "hej from the spec"
TIMEOUT_S = 300.0


def project_yaml(channel: Path) -> str:
    return f"""\
version: 1
channels: ["{channel}"]
environments:
  demo:
    conda: [python, "cemademo=1.0"]
    variables: {{CEMA_RAY_GREETING: "{GREETING}"}}
  demo2:
    conda: [python, "cemademo=2.0"]
"""


@pytest.fixture(scope="module")
def lock_path(local_channel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ray-project")
    (folder / "cema.yaml").write_text(project_yaml(local_channel), encoding="utf-8")
    project = cema.Project.load(folder, store=folder / "lock-store")
    project.lock()
    return project.lock_path


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ray-homes")
    return {name: root / name for name in ("driver", "head", "node2")}


@pytest.fixture(scope="module")
def cluster(homes: dict[str, Path]) -> Iterator[Any]:
    """A head node (2 CPUs) and a second node (resource ``node2``), each its own CEMA_HOME."""
    saved = {k: os.environ.get(k) for k in (PLUGINS_ENV_VAR, "CEMA_HOME")}
    os.environ[PLUGINS_ENV_VAR] = plugin_config()
    os.environ["CEMA_HOME"] = str(homes["driver"])
    running = cluster_utils.Cluster()
    try:
        plugins = {PLUGINS_ENV_VAR: plugin_config()}
        running.add_node(
            num_cpus=2,
            include_dashboard=False,
            env_vars={**plugins, "CEMA_HOME": str(homes["head"])},
        )
        running.add_node(
            num_cpus=1,
            resources={"node2": 1},
            env_vars={**plugins, "CEMA_HOME": str(homes["node2"])},
        )
        running.wait_for_nodes()
        ray.init(address=running.address)
        yield running
    finally:
        ray.shutdown()
        running.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- what runs on the Ray workers ---------------------------------------------------------------


@ray.remote
def where_am_i() -> dict[str, Any]:
    import sys

    import cemademo  # only the env has it

    return {
        "version": cemademo.__version__,
        "prefix": sys.prefix,
        "executable": sys.executable,
        "env": os.environ.get("CEMA_ENV"),
        "greeting": os.environ.get("CEMA_RAY_GREETING"),
        # the node lends the env its ray, and nothing else of its own env
        "numpy": importlib.util.find_spec("numpy") is not None,
    }


@ray.remote
class Greeter:
    def __init__(self) -> None:
        import cemademo

        self.module = cemademo

    def hello(self, who: str) -> tuple[str, str]:
        import sys

        return self.module.hello(who), sys.prefix


def get(ref: Any) -> Any:
    return ray.get(ref, timeout=TIMEOUT_S)


# --- the runtime_env plugin ------------------------------------------------------------------


def test_a_task_imports_a_package_the_driver_lacks(
    cluster: Any, lock_path: Path, homes: dict[str, Path]
) -> None:
    assert importlib.util.find_spec("cemademo") is None
    out = get(where_am_i.options(runtime_env=runtime_env(lock_path, "demo")).remote())
    assert out["version"] == "1.0"
    assert out["env"] == "demo"
    assert out["greeting"] == GREETING  # spec variables travel with the field
    assert Path(out["executable"]).parent == Path(out["prefix"]) / "bin"
    assert out["numpy"] is False  # the host's packages (but ray's own) stay out
    assert Path(out["prefix"]).is_relative_to(homes["head"] / "envs") or Path(
        out["prefix"]
    ).is_relative_to(homes["node2"] / "envs")


def test_a_node_with_an_empty_store_builds_the_prefix_from_the_lock(
    cluster: Any, lock_path: Path, homes: dict[str, Path]
) -> None:
    options = {"runtime_env": runtime_env(lock_path, "demo"), "resources": {"node2": 1}}
    out = get(where_am_i.options(**options).remote())
    assert out["version"] == "1.0"
    assert Path(out["prefix"]).is_relative_to(homes["node2"] / "envs")
    assert not (homes["driver"] / "envs").exists()  # the driver never builds


def test_an_actor_lives_in_an_env(cluster: Any, lock_path: Path) -> None:
    actor = Greeter.options(runtime_env=runtime_env(lock_path, "demo2")).remote()
    text, prefix = get(actor.hello.remote("ray"))
    assert text == "hello ray from cemademo 2.0"
    assert get(actor.hello.remote("again"))[1] == prefix  # the same process, the same env
    ray.kill(actor)


def test_two_envs_with_conflicting_pins_in_one_job(cluster: Any, lock_path: Path) -> None:
    refs = [
        where_am_i.options(runtime_env=runtime_env(lock_path, env)).remote()
        for env in ("demo", "demo2", "demo", "demo2")
    ]
    outs = get(refs)
    assert [o["version"] for o in outs] == ["1.0", "2.0", "1.0", "2.0"]
    assert outs[0]["prefix"] != outs[1]["prefix"]


def test_a_bad_env_name_fails_at_submission(lock_path: Path) -> None:
    with pytest.raises(EnvNotFoundError, match=r"'vision' is not in .*it has: demo, demo2"):
        runtime_env(lock_path, "vision")


def test_a_stale_lock_fails_at_submission(lock_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "stale"
    folder.mkdir()
    (folder / "cema.lock").write_text(lock_path.read_text("utf-8"), encoding="utf-8")
    spec = (lock_path.parent / "cema.yaml").read_text("utf-8")
    (folder / "cema.yaml").write_text(spec.replace("cemademo=1.0", "cemademo>=1.0"), "utf-8")
    with pytest.raises(StaleLockError, match="out of date"):
        runtime_env(folder / "cema.lock", "demo")


def test_a_raw_field_is_checked_by_the_plugin_on_the_node(cluster: Any, lock_path: Path) -> None:
    field = {"cema": {"lock": str(lock_path), "env": "vision"}}
    with pytest.raises(ray.exceptions.RuntimeEnvSetupError, match="'vision' is not in"):
        get(where_am_i.options(runtime_env=field).remote())


def test_a_raw_field_with_a_lock_path_works(cluster: Any, lock_path: Path) -> None:
    field = {"cema": {"lock": str(lock_path), "env": "demo2"}}
    assert get(where_am_i.options(runtime_env=field).remote())["version"] == "2.0"


@ray.remote
def variable(name: str) -> str | None:
    return os.environ.get(name)


def test_other_runtime_envs_still_work_where_the_plugin_is_loaded(cluster: Any) -> None:
    # Ray asks every loaded plugin for the URIs of every runtime_env, with or without `cema`
    field = {"env_vars": {"CEMA_RAY_OTHER": "not cema"}}
    assert get(variable.options(runtime_env=field).remote("CEMA_RAY_OTHER")) == "not cema"


@pytest.fixture(scope="module")
def idna_lock(conda_forge_channel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An env of the host's python and conda-forge's idna 3.6 (the host has another idna)."""
    folder = tmp_path_factory.mktemp("ray-idna")
    channel = folder / "channel"
    shutil.copytree(conda_forge_channel, channel)
    write_package(python_package(), channel)
    index_channel(channel)
    (folder / "cema.yaml").write_text(
        f'version: 1\nchannels: ["{channel}"]\nenvironments:\n  idna:\n'
        '    conda: [python, "idna=3.6"]\n',
        encoding="utf-8",
    )
    project = cema.Project.load(folder, store=folder / "lock-store")
    project.lock()
    return project.lock_path


@ray.remote
def idna_here() -> tuple[str, str]:
    import idna

    return idna.__version__, idna.__file__


@pytest.mark.shared
def test_the_env_keeps_its_own_copy_of_a_package_ray_needs(cluster: Any, idna_lock: Path) -> None:
    # ray needs idna (through requests): the node lends its copy only to an env without one
    assert importlib.util.find_spec("idna") is not None
    env = runtime_env(idna_lock, "idna")
    version, path = get(idna_here.options(runtime_env=env).remote())
    assert version == "3.6"
    assert "/envs/" in Path(path).as_posix()


def test_a_lent_package_is_the_node_s_own_copy(cluster: Any, lock_path: Path) -> None:
    # not the copy Ray vendors for its runtime_env agent, where the plugin runs
    version, _ = get(idna_here.options(runtime_env=runtime_env(lock_path, "demo")).remote())
    assert version == importlib.metadata.version("idna")


# --- in_env: the task stays in the host's env -------------------------------------------------


def test_in_env_calls_into_the_env_from_a_host_task(cluster: Any, lock_path: Path) -> None:
    hello = in_env("demo2", "cemademo", "hello", lock=lock_path)
    assert get([hello.remote(w) for w in ("a", "b")]) == [
        "hello a from cemademo 2.0",
        "hello b from cemademo 2.0",
    ]


def test_in_env_ships_a_py_file(cluster: Any, lock_path: Path, tmp_path: Path) -> None:
    plug = tmp_path / "plug_ray.py"
    plug.write_text("import cemademo\n\ndef version(x):\n    return cemademo.__version__, x * 2\n")
    assert get(in_env("demo", plug, "version", lock=lock_path).remote(21)) == ("1.0", 42)


def test_in_env_with_a_bad_env_name_fails_at_once(lock_path: Path) -> None:
    with pytest.raises(EnvNotFoundError, match="'nope' is not in"):
        in_env("nope", "cemademo", "hello", lock=lock_path)
