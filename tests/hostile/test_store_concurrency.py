"""Eight syncs of overlapping projects on one store, with ``cema gc`` looping beside them.

Four projects share some envs (same content, hence the same prefix); each is synced twice at
once, none locked beforehand (each sync locks, then builds), while ``cema gc`` (and
``gc --all-staging``) runs again and again until the last sync ends. Every sync must succeed,
every prefix be built exactly once, gc remove nothing a project references (and still remove
what nobody does), and every env end on a ready, whole prefix.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import cema
from cema.store import RECEIPT_NAME
from cema.verify import verify_prefix
from tests.conftest import CLI_TIMEOUT_S, cema_argv, cema_environ
from tests.integration.test_core_concurrency import kill_group, start_sync

pytestmark = pytest.mark.hostile

SHARED_1 = '[python, "cemademo=1.0"]'
SHARED_2 = '[python, "cemademo=2.0"]'
#: project → env → conda specs; ``one`` and ``two`` recur (one prefix each), the rest are own
PROJECTS: dict[str, dict[str, str]] = {
    "a": {"one": SHARED_1, "hello": "[cemahello]"},
    "b": {"one": SHARED_1, "two": SHARED_2},
    "c": {"two": SHARED_2, "gate": "[cemahello, cemagate]"},
    "d": {"one": SHARED_1, "two": SHARED_2, "both": '[python, "cemademo=1.0", cemahello]'},
}
#: a project synced before, whose lock then goes: its prefix is unreferenced, gc removes it
GONE = {"lonely": '[python, "cemademo=2.0", cemahello]'}
SYNCS_S = 180.0
BUILDING = re.compile(r"INFO: building \S+ \(\w+\) at (\S+)")


def _yaml(channel: Path, envs: dict[str, str]) -> str:
    body = "".join(f"  {name}:\n    conda: {specs}\n" for name, specs in envs.items())
    return f'version: 1\nchannels: ["{channel}"]\nenvironments:\n{body}'


def test_eight_syncs_of_four_projects_beside_a_gc_loop(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path
) -> None:
    gone = make_project(_yaml(local_channel, GONE), folder=Path("gone"))
    run_cema("sync", cwd=gone)
    lonely = cema.Project.load(gone, store=store).prefix("lonely")
    (gone / "cema.lock").unlink()  # its registration no longer counts
    folders = {
        name: make_project(_yaml(local_channel, envs), folder=Path(name))
        for name, envs in PROJECTS.items()
    }
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    done = threading.Event()
    gcs: list[subprocess.CompletedProcess[str]] = []

    def gc_loop() -> None:
        while not done.is_set():
            args = ["gc", "--all-staging"] if len(gcs) % 2 else ["gc"]
            gcs.append(
                subprocess.run(
                    cema_argv(*args),
                    cwd=elsewhere,
                    env=cema_environ(store.root),
                    capture_output=True,
                    text=True,
                    timeout=CLI_TIMEOUT_S,
                    check=False,
                )
            )

    looping = threading.Thread(target=gc_loop, name="gc-loop")
    looping.start()
    logs = [tmp_path / f"sync-{name}-{i}.log" for i in range(2) for name in PROJECTS]
    procs = []
    try:
        for log in logs:
            procs.append(start_sync(folders[log.stem.split("-")[1]], store, log))
        deadline = time.monotonic() + SYNCS_S
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        done.set()
        for proc in procs:
            if proc.poll() is None:
                kill_group(proc)
        looping.join(timeout=CLI_TIMEOUT_S)
    outputs = "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs)
    assert [p.returncode for p in procs] == [0] * len(logs), outputs

    # gc ran beside the syncs, never failed, and removed only the unreferenced prefix
    assert len(gcs) >= 2, "gc did not loop beside the syncs"
    failed = [g for g in gcs if g.returncode != 0]
    assert failed == [], failed[0].stderr if failed else ""
    removed = [  # prefixes (gc also removes what dead hosts left in /tmp and /dev/shm)
        line.removeprefix("removing ")
        for g in gcs
        for line in g.stdout.splitlines()
        if line.startswith(f"removing {store.root}")
    ]
    assert removed == [str(lonely)], removed

    # each prefix built once, by one of the eight syncs
    built = Counter(m.group(1) for log in logs for m in BUILDING.finditer(log.read_text()))
    assert set(built.values()) == {1}, (built, outputs)
    prefixes = {
        (project, env): cema.Project.load(folder, store=store).prefix(env)
        for project, folder in folders.items()
        for env in PROJECTS[project]
    }
    # shared envs share one prefix: 2 shared + 3 own = 5 prefixes
    assert len(set(prefixes.values())) == 5
    assert set(built) == {str(p) for p in prefixes.values()}, built

    # every env of every project resolves to a ready, whole prefix; nothing else is left
    for (project, env), prefix in prefixes.items():
        assert (prefix / RECEIPT_NAME).is_file(), f"{project}/{env}: {prefix} is not ready"
        assert verify_prefix(prefix, full=True) == [], f"{project}/{env}"
    assert sorted(store.envs_dir.iterdir()) == sorted(set(prefixes.values()))
    for folder in folders.values():
        assert "up to date" in run_cema("sync", cwd=folder).stdout
        run_cema("verify", "--full", cwd=folder)
