"""Cema on Dask where it matters: two worker processes, each with its own ``CEMA_HOME``.

The workers share no store and never read the client's lock file: the plugin sends the lock's
text. A channel the lock names by a relative path is resolved against the lock's folder on the
client; a worker that cannot see that folder refuses the sync with a clear error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

import cema  # noqa: E402
from cema.dask import CemaPlugin, in_env  # noqa: E402
from cema.errors import CemaError  # noqa: E402
from cema.store import RECEIPT_NAME  # noqa: E402

PLUG = Path(__file__).resolve().parents[1] / "data" / "dask" / "plug.py"
WORKERS = ("node-a", "node-b")

pytestmark = pytest.mark.slow


# --- the cluster: a scheduler and two Nanny workers, each started with its own CEMA_HOME -------


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dask-stores")
    return {name: root / name / "cema-home" for name in WORKERS}


@pytest.fixture(scope="module")
def client(homes: dict[str, Path]) -> Iterator[Any]:
    workers = {
        name: {
            "cls": distributed.Nanny,
            "options": {"nthreads": 1, "env": {"CEMA_HOME": str(home)}, "name": name},
        }
        for name, home in homes.items()
    }
    scheduler = {"cls": distributed.Scheduler, "options": {"dashboard": False}}
    with (
        distributed.SpecCluster(workers=workers, scheduler=scheduler) as cluster,
        distributed.Client(cluster) as connected,
    ):
        connected.wait_for_workers(len(WORKERS))
        yield connected


# --- run on the workers --------------------------------------------------------------------


def node_home() -> str:
    return os.environ["CEMA_HOME"]


def forbid_solving() -> None:
    """Make any solve in this worker process fail: a sync from the lock must not need one."""
    from cema.engines.rattler import RattlerEngine

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a Dask worker solved instead of installing the lock")

    RattlerEngine.solve = refuse  # type: ignore[method-assign]
    RattlerEngine.find = refuse  # type: ignore[method-assign]


def locked(folder: Path, channel: str, demo: str = "cemademo=1.0") -> Path:
    """A project on ``channel`` (as written in its cema.yaml), locked; the lock's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cema.yaml").write_text(
        f'version: 1\nchannels: ["{channel}"]\n'
        f"environments:\n  demo:\n    conda: [python, {demo}]\n",
        encoding="utf-8",
    )
    project = cema.Project.load(folder, store=folder / "lock-store")
    project.lock()
    return project.lock_path


def hide(path: Path) -> None:
    """Move ``path`` out of the workers' reach (they share no filesystem with the client)."""
    path.rename(path.with_name(path.name + ".client-only"))


# --- tests -----------------------------------------------------------------------------------


def test_each_worker_builds_the_prefix_into_its_own_store_from_the_lock_text(
    client: Any, homes: dict[str, Path], local_channel: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(local_channel, project / "channel")
    lock_path = locked(project, "./channel")
    assert "./channel/" in lock_path.read_text("utf-8")  # the lock names it relatively
    assert client.run(node_home) == {
        address: str(homes[w["name"]]) for address, w in client.scheduler_info()["workers"].items()
    }
    client.run(forbid_solving)

    plugin = CemaPlugin(lock_path, envs=["demo"])
    assert str(project / "channel") in plugin.lock_text  # resolved against the lock's folder
    hide(lock_path)  # the workers get the lock's text, never its path
    hide(project / "cema.yaml")
    try:
        responses = client.register_plugin(plugin)
        assert [r["status"] for r in responses.values()] == ["OK", "OK"]
        results = client.gather(client.map(in_env("demo", PLUG, "double"), range(8)))
        assert [r["value"] for r in results] == [2 * x for x in range(8)]
        assert {r["cemademo"] for r in results} == {"1.0"}

        addresses = set()
        for home in homes.values():
            ready = cema.Store(home).inventory()
            assert len(ready) == 1, home
            (address,) = ready
            addresses.add(address)
            assert (home / "envs" / address / RECEIPT_NAME).is_file()
            copy = home / "dask" / "locks" / plugin.lock_digest / "cema.lock"
            assert copy.read_text("utf-8") == plugin.lock_text
        assert len(addresses) == 1  # the same lock: the same content address on every node
    finally:
        client.unregister_worker_plugin(plugin.name)


def test_a_relative_channel_the_workers_cannot_see_is_refused_clearly(
    client: Any, local_channel: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(local_channel, project / "channel")
    # cemademo 2.0: a package no worker has in its package cache yet
    plugin = CemaPlugin(locked(project, "./channel", "cemademo=2.0"), envs=["demo"])
    hide(project / "channel")  # only the client's machine had it
    with pytest.raises(CemaError) as caught:
        client.register_plugin(plugin)
    message = str(caught.value)
    assert "on Dask worker node-" in message
    assert str(project / "channel") in message  # the folder, as resolved on the client
    assert "./channel/" in message  # and as the lock names it
    assert caught.value.hint is not None and "shared" in caught.value.hint
    for home in client.run(node_home).values():
        assert not any("cemademo-2.0" in p.name for p in cema.Store(home).package_cache.iterdir())
