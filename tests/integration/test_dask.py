"""Cema on a real Dask LocalCluster: CemaPlugin syncs locked envs on workers, in_env calls them."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

import cema  # noqa: E402
from cema.dask import CemaPlugin, in_env  # noqa: E402
from cema.errors import EngineError, RemoteError, WorkerCrashedError  # noqa: E402
from cema.store import RECEIPT_NAME  # noqa: E402
from tests.channel_builder import GATE_DIR  # noqa: E402

PLUG = Path(__file__).resolve().parents[1] / "data" / "dask" / "plug.py"
N_WORKERS = 2
GREETING = "bonjour from the spec"
RESULT_TIMEOUT_S = 120.0

pytestmark = pytest.mark.slow


def project_yaml(channel: Path) -> str:
    return f"""\
version: 1
channels: ["{channel}"]
environments:
  demo:
    conda: [python, "cemademo=1.0"]
    variables: {{CEMA_DASK_GREETING: "{GREETING}"}}
  demo2:
    conda: [python, "cemademo=2.0"]
  gated:
    conda: [python, cemagate]
"""


def locked_project(folder: Path, channel: Path) -> Path:
    """Write a project on ``channel`` into ``folder`` and lock it; return the lock's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cema.yaml").write_text(project_yaml(channel), encoding="utf-8")
    project = cema.Project.load(folder, store=folder / "lock-store")
    project.lock()
    return project.lock_path


# --- one cluster for the module ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # every node's CEMA_HOME points into the test's tmp dir, never at the user's cache
    home = tmp_path_factory.mktemp("dask-node-home")
    with distributed.LocalCluster(
        n_workers=N_WORKERS,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        env={"CEMA_HOME": str(home)},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as connected:
        yield connected


@pytest.fixture(scope="module")
def lock_path(local_channel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return locked_project(tmp_path_factory.mktemp("dask-project"), local_channel)


@pytest.fixture
def register(client: Any) -> Iterator[Callable[[CemaPlugin], dict[str, Any]]]:
    """``register(plugin)``: register on every worker; unregistered (teardown) after the test."""
    names: list[str] = []

    def add(plugin: CemaPlugin) -> dict[str, Any]:
        names.append(plugin.name)
        result: dict[str, Any] = client.register_plugin(plugin)
        return result

    yield add
    for name in names:
        client.unregister_worker_plugin(name)


# --- functions that run on the Dask workers (pickled by reference) ------------------------------


def set_node_home(root: str, dask_worker: Any = None) -> str:
    """Give this worker process its own CEMA_HOME (one node per worker)."""
    home = str(Path(root) / f"node-{dask_worker.name}")
    os.environ["CEMA_HOME"] = home
    return home


def restore_node_home(home: str) -> None:
    os.environ["CEMA_HOME"] = home


def node_home() -> str:
    return os.environ["CEMA_HOME"]


def log_syncs_to(path: str) -> None:
    """Append Cema's log lines of this worker process to ``path`` (one file for all workers)."""
    logger = logging.getLogger("cema")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(f"{os.getpid()} %(message)s"))
    handler.set_name("cema-dask-test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def stop_logging_syncs() -> None:
    logger = logging.getLogger("cema")
    for handler in [h for h in logger.handlers if h.get_name() == "cema-dask-test"]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.NOTSET)


def set_home(home: str) -> str:
    """Point this worker's HOME at ``home`` (where cemagate's activation looks for its gate)."""
    before = os.environ["HOME"]
    os.environ["HOME"] = home
    return before


def big_roundtrip(fn: Callable[..., Any], n: int) -> dict[str, Any]:
    """On a Dask worker: send an ``n``-float array through ``fn`` and look at what came back."""
    import mmap

    import numpy as np

    array = np.arange(n, dtype=np.float64)
    result = fn(array, 2.0)
    base: Any = result
    in_shared_memory = False
    while base is not None:
        if isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap):
            in_shared_memory = True
            break
        base = getattr(base, "base", None)
    return {
        "equal": bool(np.array_equal(result, array * 2.0)),
        "in_shared_memory": in_shared_memory,
        "nbytes": int(result.nbytes),
    }


# --- tests ---------------------------------------------------------------------------------------


def test_per_node_stores_from_cema_home(
    client: Any, register: Callable[..., Any], lock_path: Path, tmp_path: Path
) -> None:
    before = client.run(node_home)
    homes = client.run(set_node_home, str(tmp_path))
    try:
        responses = register(CemaPlugin(lock_path, envs=["demo"]))
        assert len(responses) == N_WORKERS
        assert all(r["status"] == "OK" for r in responses.values())
        results = client.gather(client.map(in_env("demo", PLUG, "double"), range(20)))
        assert [r["value"] for r in results] == [2 * x for x in range(20)]
        assert {r["cemademo"] for r in results} == {"1.0"}
        # the spec's variables come from the cema.yaml beside the lock
        assert {r["greeting"] for r in results} == {GREETING}
        # each node built the env into its own store
        assert len(set(homes.values())) == N_WORKERS
        for home in homes.values():
            ready = cema.Store(home).inventory()
            assert len(ready) == 1, home
            (address,) = ready
            assert (Path(home) / "envs" / address / RECEIPT_NAME).is_file()
    finally:
        for address, home in before.items():
            client.run(restore_node_home, home, workers=[address])


def test_shared_store_builds_each_prefix_once(
    client: Any,
    register: Callable[..., Any],
    lock_path: Path,
    tmp_path: Path,
    poll_until: Callable[..., Any],
) -> None:
    shared = tmp_path / "shared-store"
    sync_log = tmp_path / "syncs.log"
    # cemagate's activation (before the receipt) waits while this file exists: the first
    # worker to build `gated` is held there, and the other must wait for it, not build again
    gate = tmp_path / "home" / GATE_DIR
    gate.mkdir(parents=True)
    (gate / "hold").touch()
    homes = client.run(set_home, str(tmp_path / "home"))
    client.run(log_syncs_to, str(sync_log))
    outcome: dict[str, Any] = {}

    def registration() -> None:
        try:
            outcome["responses"] = register(CemaPlugin(lock_path, store=shared))
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=registration)
    thread.start()
    try:
        poll_until((gate / "waiting").exists, what="a build held at the gate")
        poll_until(
            lambda: sync_log.read_text("utf-8").count(" syncing ") == N_WORKERS,
            what="both workers syncing",
        )
    finally:
        (gate / "hold").unlink()
        thread.join(RESULT_TIMEOUT_S)
        client.run(stop_logging_syncs)
        for address, home in homes.items():
            client.run(set_home, home, workers=[address])
    assert "error" not in outcome, outcome
    assert len(outcome["responses"]) == N_WORKERS
    lines = sync_log.read_text("utf-8").splitlines()
    builds = [line.split(" building ")[1].split(" ")[0] for line in lines if " building " in line]
    # three envs, two workers syncing at once on one store: each prefix built exactly once
    assert sorted(builds) == ["demo", "demo2", "gated"], lines
    assert len((gate / "waiting").read_text("utf-8").splitlines()) == 1
    assert len(cema.Store(shared).inventory()) == 3
    out = client.gather(client.map(in_env("demo2", PLUG, "double"), range(4)))
    assert {r["cemademo"] for r in out} == {"2.0"}


def test_200_calls_need_a_package_the_client_lacks(
    client: Any, register: Callable[..., Any], lock_path: Path, tmp_path: Path
) -> None:
    assert importlib.util.find_spec("cemademo") is None
    register(CemaPlugin(lock_path, envs=["demo", "demo2"], store=tmp_path / "store"))
    futures = client.map(in_env("demo2", PLUG, "double"), range(200))
    results = client.gather(futures)
    assert [r["value"] for r in results] == [2 * x for x in range(200)]
    assert {r["cemademo"] for r in results} == {"2.0"}
    # one env worker per (Dask worker, env), reused by every later task
    workers_used = {w for f in futures for w in client.who_has([f])[f.key]}
    assert len({r["pid"] for r in results}) == len(workers_used) <= N_WORKERS
    # a module name importable in the env works as well as a file
    hellos = client.gather(client.map(in_env("demo", "cemademo", "hello"), ["a", "b"]))
    assert hellos == ["hello a from cemademo 1.0", "hello b from cemademo 1.0"]
    assert importlib.util.find_spec("cemademo") is None


def test_an_env_worker_crash_fails_only_its_task(
    client: Any, register: Callable[..., Any], lock_path: Path, tmp_path: Path
) -> None:
    register(CemaPlugin(lock_path, envs=["demo"], store=tmp_path / "store"))
    bad = 7
    futures = client.map(in_env("demo", PLUG, "crash_on"), range(20), bad=bad)
    distributed.wait(futures, timeout=RESULT_TIMEOUT_S)
    failed = [f for f in futures if f.status == "error"]
    assert len(failed) == 1
    with pytest.raises(WorkerCrashedError, match="exited with code 3"):
        failed[0].result()
    good = [f.result() for f in futures if f.status == "finished"]
    assert sorted(x for x, _ in good) == [x for x in range(20) if x != bad]
    # the env worker was relaunched for the tasks that followed
    again = client.gather(client.map(in_env("demo", PLUG, "crash_on"), range(100, 110), bad=-1))
    assert [x for x, _ in again] == list(range(100, 110))


def test_exceptions_keep_their_type_or_arrive_as_remote_error(
    client: Any, register: Callable[..., Any], lock_path: Path, tmp_path: Path
) -> None:
    register(CemaPlugin(lock_path, envs=["demo"], store=tmp_path / "store"))
    fail = in_env("demo", PLUG, "fail")
    with pytest.raises(KeyError, match="no such thing"):
        client.submit(fail, "key", pure=False).result(timeout=RESULT_TIMEOUT_S)
    with pytest.raises(RemoteError) as caught:
        client.submit(fail, "plugin", pure=False).result(timeout=RESULT_TIMEOUT_S)
    assert caught.value.remote_type == "plug.PluginOnlyError"
    assert "only the env knows this class" in str(caught.value)
    assert "def fail" in caught.value.remote_traceback or "raise" in caught.value.remote_traceback


def test_a_lock_naming_a_missing_package_fails_registration(
    client: Any, register: Callable[..., Any], local_channel: Path, tmp_path: Path
) -> None:
    channel = tmp_path / "channel"
    shutil.copytree(local_channel, channel)
    lock = locked_project(tmp_path / "project", channel)
    for archive in (channel / "noarch").glob("cemademo-1.0-*"):
        archive.unlink()  # the lock names it; the channel no longer has it
    with pytest.raises(EngineError, match=r"on Dask worker \S+ \(tcp://.*cemademo") as caught:
        register(CemaPlugin(lock, envs=["demo"], store=tmp_path / "store"))
    assert caught.value.hint
    # a task asking for the env gets the same error rather than a half-synced env
    with pytest.raises(EngineError, match="cemademo"):
        client.submit(in_env("demo", PLUG, "double"), 1, pure=False).result(
            timeout=RESULT_TIMEOUT_S
        )


def test_an_unknown_env_name_fails_on_the_client(lock_path: Path) -> None:
    with pytest.raises(cema.LockError, match="nope"):
        CemaPlugin(lock_path, envs=["nope"])


def test_calling_in_env_outside_a_task_says_how_to_use_it() -> None:
    with pytest.raises(cema.CemaError, match="runs inside Dask tasks"):
        in_env("demo", PLUG, "double")(1)


@pytest.mark.network
def test_a_pypi_venv_with_numpy_passes_arrays_through_shared_memory(
    client: Any, register: Callable[..., Any], tmp_path: Path
) -> None:
    pytest.importorskip("numpy")
    folder = tmp_path / "venv-project"
    folder.mkdir()
    (folder / "cema.yaml").write_text(
        'version: 1\nenvironments:\n  np:\n    python: "3.11"\n    pip: ["numpy"]\n',
        encoding="utf-8",
    )
    project = cema.Project.load(folder, store=tmp_path / "lock-store")
    project.lock()
    register(CemaPlugin(project.lock_path, store=tmp_path / "store"))
    n = 1 << 20  # 8 MiB of float64: above the shared-memory threshold
    out = client.submit(big_roundtrip, in_env("np", PLUG, "scale"), n, pure=False).result(
        timeout=RESULT_TIMEOUT_S
    )
    assert out == {"equal": True, "in_shared_memory": True, "nbytes": 8 * n}


def test_a_worker_added_after_registration_gets_the_envs(
    cluster: Any, client: Any, register: Callable[..., Any], lock_path: Path, tmp_path: Path
) -> None:
    # last in the module: it changes the cluster's size
    register(CemaPlugin(lock_path, envs=["demo"], store=tmp_path / "store"))
    before = set(client.scheduler_info()["workers"])
    cluster.scale(N_WORKERS + 1)
    try:
        client.wait_for_workers(N_WORKERS + 1, timeout=RESULT_TIMEOUT_S)
        (newcomer,) = set(client.scheduler_info()["workers"]) - before
        out = client.submit(
            in_env("demo", PLUG, "double"), 21, workers=[newcomer], pure=False
        ).result(timeout=RESULT_TIMEOUT_S)
        assert out["value"] == 42
        assert out["cemademo"] == "1.0"
    finally:
        cluster.scale(N_WORKERS)
        # wait until the extra worker is gone: unregistering the plugin while it retires races
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while len(client.scheduler_info()["workers"]) > N_WORKERS:
            assert time.monotonic() < deadline, "the extra worker did not retire"
            client.run_on_scheduler(lambda: None)  # a round trip to the scheduler, no sleep
