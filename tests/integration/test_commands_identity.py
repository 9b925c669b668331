"""A shared prefix speaks for one env (#18): install commands get only what is in its address.

Install commands run with ``CEMA_ENV`` and the spec's ``variables``; both are part of the
address of a prefix with commands, and both are in the lock, so a sync from the lock alone
gives the commands the same. Envs without commands share prefixes as before.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

import cema
from cema.model.lock import LockedEnv, LockedPlatform
from cema.model.lockio import read_lock, write_lock
from tests.integration import micromamba_fixtures
from tests.integration.test_cli_output import checked

micromamba_double = micromamba_fixtures.micromamba_double

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX install commands")
SEEN = 'echo "$GREETING/$CEMA_ENV" > seen.txt'


def _spec(channel: Path, envs: dict[str, str | None], *, commands: bool = True) -> str:
    lines = [
        "version: 1",
        f'channels: ["{channel}"]',
        "platforms: [linux-64]",
        "environments:",
    ]
    for name, greeting in envs.items():
        lines += [f"  {name}:", "    conda: [cemahello]"]
        if greeting is not None:
            lines += ["    variables:", f"      GREETING: {greeting}"]
        if commands:
            lines += ["    install_commands:", f"      all: ['{SEEN}']"]
    return "\n".join(lines) + "\n"


def _prefixes(folder: Path, store: cema.Store, *names: str) -> list[Path]:
    project = cema.Project.load(folder, store=store)
    return [project.prefix(n) for n in names]


def _seen(prefix: Path) -> str:
    return (prefix / "seen.txt").read_text().strip()


def test_envs_share_a_prefix_with_commands_only_when_the_commands_read_the_same(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    first = make_project(_spec(local_channel, {"a": "hi", "b": "ho", "c": "hi"}), folder="one")
    run_cema("sync", cwd=first)
    a, b, c = _prefixes(first, store, "a", "b", "c")
    # the same packages and commands: each env its own prefix, each command saw its own env
    assert len({a, b, c}) == 3
    assert (_seen(a), _seen(b), _seen(c)) == ("hi/a", "ho/b", "hi/c")
    # another project: the same name and variables share that prefix, other variables do not
    second = make_project(_spec(local_channel, {"a": "hi", "b": "hey"}), folder="two")
    run_cema("sync", cwd=second)
    a2, b2 = _prefixes(second, store, "a", "b")
    assert a2 == a
    assert b2 not in (a, b, c) and _seen(b2) == "hey/b"
    assert _seen(b) == "ho/b"  # untouched


def test_envs_without_commands_keep_their_shared_address(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(_spec(local_channel, {"x": "hi", "y": "ho"}, commands=False))
    run_cema("sync", cwd=folder)
    x, y = _prefixes(folder, store, "x", "y")
    assert x == y  # variables are activation only: the same content, one prefix
    lock = read_lock(folder / "cema.lock")
    content = lock.envs["x"].platforms["linux-64"]
    assert x.name == content.content_hash
    assert "commands-env" not in (folder / "cema.lock").read_text()
    assert lock.envs["y"].variables == (("GREETING", "ho"),)  # recorded all the same


def test_a_sync_from_the_lock_alone_gives_the_commands_their_variables(
    local_channel: Path, make_project, run_cema, tmp_path: Path
) -> None:
    """What a Dask or Ray worker does: the lock's text, no cema.yaml, another store."""
    folder = make_project(_spec(local_channel, {"a": "hi"}))
    run_cema("lock", cwd=folder)
    elsewhere = tmp_path / "worker"
    elsewhere.mkdir()
    shutil.copy(folder / "cema.lock", elsewhere / "cema.lock")
    lock = read_lock(elsewhere / "cema.lock")
    assert lock.envs["a"].variables == (("GREETING", "hi"),)
    other = cema.Store(tmp_path / "other-store")
    from cema.engines import get_builder
    from cema.sync import sync_lock

    result = sync_lock(other, lock, ["a"], platform="linux-64", builder=get_builder("rattler"))
    assert _seen(result.prefixes["a"]) == "hi/a"


def test_a_change_of_variables_alone_is_locked_without_a_solve(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path
) -> None:
    channel = tmp_path / "channel"
    shutil.copytree(local_channel, channel)
    folder = make_project(_spec(channel, {"a": "hi"}))
    run_cema("sync", cwd=folder)
    (before,) = _prefixes(folder, store, "a")
    records = read_lock(folder / "cema.lock").envs["a"].platforms["linux-64"].conda
    (folder / "cema.yaml").write_text(_spec(channel, {"a": "ho"}))
    proc = run_cema("sync", "--locked", cwd=folder, check=False)
    assert proc.returncode == 1 and "out of date" in proc.stderr
    shutil.rmtree(channel)  # a solve would fail now: the lock is rewritten from its records
    run_cema("lock", cwd=folder)
    lock = read_lock(folder / "cema.lock")
    assert lock.envs["a"].variables == (("GREETING", "ho"),)
    assert lock.envs["a"].platforms["linux-64"].conda == records
    shutil.copytree(local_channel, channel)  # the packages come from the cache or the channel
    run_cema("sync", "--locked", cwd=folder)
    (after,) = _prefixes(folder, store, "a")
    assert after != before and _seen(after) == "ho/a" and _seen(before) == "hi/a"


def test_a_lock_an_older_cema_wrote_still_syncs_and_is_brought_up_to_date(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(_spec(local_channel, {"a": None}))
    run_cema("lock", cwd=folder)
    new = read_lock(folder / "cema.lock")
    content = new.envs["a"].platforms["linux-64"]
    # the same lock as written before variables and commands-env were recorded
    old_content = LockedPlatform(
        platform="linux-64", kind="conda", conda=content.conda, commands=content.commands
    )
    old = new.with_envs(
        [
            LockedEnv(
                name="a",
                spec_hash=new.envs["a"].spec_hash,
                kind="conda",
                platforms={"linux-64": old_content},
            )
        ]
    )
    write_lock(old, folder / "cema.lock")
    doc = yaml.safe_load((folder / "cema.lock").read_text())
    assert "commands-env" not in doc["environments"]["a"]["platforms"]["linux-64"]
    run_cema("sync", "--frozen", cwd=folder)
    (legacy,) = _prefixes(folder, store, "a")
    # its address as before (no commands-env hashed), built as before (CEMA_ENV alone)
    assert legacy.name == old_content.content_hash != content.content_hash
    assert _seen(legacy) == "/a"
    run_cema("lock", cwd=folder)  # no package change: the new fields added
    assert read_lock(folder / "cema.lock").envs["a"].platforms["linux-64"] == content
    run_cema("sync", "--locked", cwd=folder)
    (current,) = _prefixes(folder, store, "a")
    assert current.name == content.content_hash


def test_micromamba_scripts_give_the_commands_the_same(
    local_channel: Path, make_project, run_cema, store: cema.Store, micromamba_double: Path
) -> None:
    folder = make_project(_spec(local_channel, {"a": "it's $x"}))
    run_cema("sync", "--micromamba", str(micromamba_double), cwd=folder)
    (prefix,) = _prefixes(folder, store, "a")
    assert _seen(prefix) == "it's $x/a"  # quoted: no expansion on the way
    assert "up to date" in run_cema("sync", "--engine", "rattler", cwd=folder).stdout


# --- the python a pip-only env is locked for ----------------------------------------------------


def test_the_chosen_python_is_said_and_kept_on_a_bare_upgrade(
    make_project, run_cema, tmp_path: Path
) -> None:
    folder = make_project(
        """\
        version: 1
        platforms: [linux-64]
        environments:
          e: {kind: venv}
        """
    )
    host = f"{sys.version_info[0]}.{sys.version_info[1]}"  # the python the CLI runs under
    proc = run_cema("lock", cwd=folder)
    assert f"locked for python {host}" in proc.stderr and "--upgrade e" in proc.stderr
    lock = read_lock(folder / "cema.lock")
    assert lock.envs["e"].python == host
    # as if locked on a machine whose newest python was another one
    write_lock(lock.with_envs([replace(lock.envs["e"], python="3.7")]), lock.path)
    proc = run_cema("lock", "--upgrade", cwd=folder)
    assert read_lock(folder / "cema.lock").envs["e"].python == "3.7"
    assert "locked for python" not in proc.stderr
    proc = run_cema("lock", "--upgrade", "e", cwd=folder)  # naming it chooses again
    assert read_lock(folder / "cema.lock").envs["e"].python == host
    assert f"locked for python {host}" in proc.stderr


# --- cema gc and what killed hosts left -----------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_gc_removes_worker_folders_of_dead_hosts_only(
    run_cema, tmp_path: Path, store: cema.Store
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    dead, live = _dead_pid(), os.getpid()
    gone = tmp / f"cema-worker-{dead}-abc123"
    kept = tmp / f"cema-worker-{live}-def456"
    for folder in (gone, kept):
        folder.mkdir()
        (folder / "worker.sock").write_text("")
    segment = Path("/dev/shm") / f"cema_{dead}_{os.urandom(6).hex()}"
    if Path("/dev/shm").is_dir():
        segment.write_bytes(b"x" * 16)
    env = {"TMPDIR": str(tmp)}
    listed = checked(
        run_cema("gc", "--dry-run", "--json", cwd=tmp_path, env=env).stdout, "cli-gc.schema.json"
    )
    assert str(gone) in listed["orphans"] and str(kept) not in listed["orphans"]
    assert gone.is_dir() and kept.is_dir()  # a dry run removes nothing
    if Path("/dev/shm").is_dir():
        assert str(segment) in listed["orphans"] and segment.exists()
    said = run_cema("gc", cwd=tmp_path, env=env).stdout
    assert f"removing {gone}" in said
    assert not gone.exists() and kept.is_dir()
    assert not segment.exists()
    again = checked(run_cema("gc", "--json", cwd=tmp_path, env=env).stdout, "cli-gc.schema.json")
    assert [p for p in again["orphans"] if p.startswith(str(tmp))] == []
