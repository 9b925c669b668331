"""Killed and concurrent syncs on one store: no prefix ever looks ready unless it is whole."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

import cema
from cema.store import RECEIPT_NAME
from tests.channel_builder import GATE_DIR, build_channel, bulk_package
from tests.conftest import cema_argv, cema_environ

BULK_FILES = 3_000


def gated_yaml(channel: Path, *, extra_env: str = "") -> str:
    return f"""\
        version: 1
        channels: ["{channel}"]
        environments:
          gated:
            conda: [python, "cemademo=1.0", cemahello, cemagate]
        {extra_env}"""


def start_sync(
    folder: Path, store: cema.Store, log: Path, home: Path | None = None, *args: str
) -> subprocess.Popen[bytes]:
    """``cema -vv sync`` in its own session (so a kill reaches its children), stderr to ``log``."""
    extra = {"HOME": str(home)} if home is not None else {}
    with log.open("wb") as err:
        return subprocess.Popen(
            cema_argv("-vv", "sync", *args),
            cwd=folder,
            env=cema_environ(store.root, extra),
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def staging_entries(store: cema.Store) -> list[Path]:
    folder = store.root / "staging"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def assert_clean_and_whole(store: cema.Store, prefix: Path) -> None:
    assert (prefix / RECEIPT_NAME).is_file()
    assert staging_entries(store) == []
    trash = store.root / "trash"
    assert not trash.is_dir() or list(trash.iterdir()) == []
    assert sorted(p.name for p in store.envs_dir.iterdir()) == [prefix.name]


def open_gate(tmp_path: Path) -> Path:
    """A ``HOME`` whose ``cema-test-gate/hold`` makes ``cemagate``'s activation wait."""
    home = tmp_path / "home"
    (home / GATE_DIR).mkdir(parents=True)
    (home / GATE_DIR / "hold").touch()
    return home


@pytest.fixture(scope="module")
def bulk_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A channel with one package of many files: its cold install lasts long enough to kill."""
    return build_channel(tmp_path_factory.mktemp("bulk"), [bulk_package(files=BULK_FILES)])


# --- kill -9 ------------------------------------------------------------------------------------


def test_kill_after_publish_before_the_receipt_then_sync_again(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, poll_until
) -> None:
    folder = make_project(gated_yaml(local_channel))
    run_cema("lock", cwd=folder)
    home = open_gate(tmp_path)
    proc = start_sync(folder, store, tmp_path / "killed.log", home)
    try:
        waiting = home / GATE_DIR / "waiting"
        poll_until(waiting.exists, timeout_s=60, what="the activation script at the gate")
        # published (renamed into envs/), but the receipt is not written yet
        (prefix,) = store.envs_dir.iterdir()
        assert not (prefix / RECEIPT_NAME).exists()
        assert (prefix / "bin" / "cemahello").is_file()
        assert store.inventory() == {}
    finally:
        kill_group(proc)
    assert store.inventory() == {}  # a killed build never looks ready
    with pytest.raises(cema.EnvNotFoundError):
        cema.Project.load(folder, store=store).prefix("gated")
    listed = run_cema("list", cwd=folder)
    assert "not synced" in listed.stdout

    out = run_cema("-v", "sync", cwd=folder)
    assert "incomplete prefix" in out.stderr  # the leftover was noticed and cleared
    assert cema.Project.load(folder, store=store).prefix("gated") == prefix
    assert_clean_and_whole(store, prefix)
    hello = run_cema("run", "gated", "--", "cemahello", cwd=folder)
    assert hello.stdout.strip() == f"cemahello 1.0 installed in {prefix}"
    active = run_cema("run", "gated", "--", "sh", "-c", 'echo "$CEMAGATE_ACTIVE"', cwd=folder)
    assert active.stdout.strip() == "1"


def linking_in_staging(store: cema.Store) -> bool:
    """True once some staging prefix has package files linked into it (not just created)."""
    return any((entry / "share").is_dir() for entry in staging_entries(store))


@pytest.mark.slow
def test_kill_during_install_in_staging_then_sync_again(
    bulk_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, poll_until
) -> None:
    folder = make_project(
        f"""\
        version: 1
        channels: ["{bulk_channel}"]
        environments:
          bulk:
            conda: [cemabulk]
        """
    )
    run_cema("lock", cwd=folder)
    proc = start_sync(folder, store, tmp_path / "killed.log")
    try:
        # spin (no sleep): linking a few thousand files is a short window on a fast disk
        poll_until(
            lambda: linking_in_staging(store) or proc.poll() is not None,
            timeout_s=120,
            interval_s=0,
            what="files being linked into a staging prefix",
        )
    finally:
        running = proc.poll() is None
        if running:
            kill_group(proc)
    if not running:
        pytest.fail("the sync finished before it could be killed: make the bulk package bigger")
    # killed while linking (or, at the latest, just after the rename): nothing looks ready
    assert store.inventory() == {}
    assert staging_entries(store) or list(store.envs_dir.iterdir())

    out = run_cema("-v", "sync", cwd=folder)
    assert "building bulk" in out.stderr
    prefix = cema.Project.load(folder, store=store).prefix("bulk")
    assert_clean_and_whole(store, prefix)
    files = sorted((prefix / "share" / "cemabulk").rglob("*.txt"))
    assert len(files) == BULK_FILES
    for f in files[:: BULK_FILES // 20]:
        assert f.read_text() == f"cemabulk file {int(f.stem[1:])}\n" * 8


# --- concurrent syncs ---------------------------------------------------------------------------


def count_in(logs: list[Path], needle: str) -> int:
    return sum(log.read_text().count(needle) for log in logs)


def test_four_held_syncs_build_each_prefix_once(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, poll_until
) -> None:
    """Four syncs (two projects, same content) meet at the prefix lock; one builds, three reuse."""
    first = make_project(gated_yaml(local_channel), folder=Path("first"))
    second = make_project(gated_yaml(local_channel), folder=Path("second"))
    run_cema("lock", cwd=first)
    run_cema("lock", cwd=second)
    home = open_gate(tmp_path)
    logs = [tmp_path / f"sync{i}.log" for i in range(4)]
    procs = [
        start_sync(folder, store, log, home)
        for folder, log in zip([first, second, first, second], logs, strict=True)
    ]
    try:
        waiting = home / GATE_DIR / "waiting"
        poll_until(waiting.exists, timeout_s=60, what="the builder at the gate")
        # every process has asked for the prefix lock while the builder holds it (not just
        # the registration's lock, which a sync takes first for a new address)
        prefix_lock = f"{store.root / 'locks'}{os.sep}"
        poll_until(
            lambda: all(
                any(
                    "Attempting to acquire lock" in line and prefix_lock in line
                    for line in log.read_text().splitlines()
                )
                for log in logs
            ),
            timeout_s=60,
            what="all four syncs at the prefix lock",
        )
        (home / GATE_DIR / "hold").unlink()
        for proc in procs:
            proc.wait(timeout=120)
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill_group(proc)
    outputs = "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs)
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert count_in(logs, "INFO: building gated") == 1, outputs
    assert count_in(logs, "was built by another sync meanwhile") == 3, outputs
    assert len(waiting.read_text().splitlines()) == 1  # activation ran once: one build
    assert len(store.inventory()) == 1
    prefix = cema.Project.load(first, store=store).prefix("gated")
    assert cema.Project.load(second, store=store).prefix("gated") == prefix
    assert_clean_and_whole(store, prefix)


def test_four_free_running_syncs_all_succeed(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path
) -> None:
    """No gate: four syncs race through lock, plan and build; each prefix is built once."""
    extra = """\
  solo:
            conda: [python, "cemademo=2.0"]
        """
    first = make_project(gated_yaml(local_channel, extra_env=extra), folder=Path("first"))
    second = make_project(gated_yaml(local_channel), folder=Path("second"))
    logs = [tmp_path / f"sync{i}.log" for i in range(4)]
    # no lock yet either: each sync locks (atomically) before it builds
    procs = [
        start_sync(folder, store, log)
        for folder, log in zip([first, second, first, second], logs, strict=True)
    ]
    for proc in procs:
        proc.wait(timeout=120)
    outputs = "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs)
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert count_in(logs, "INFO: building gated") == 1, outputs
    assert count_in(logs, "INFO: building solo") == 1, outputs
    assert len(store.inventory()) == 2
    for folder in (first, second):
        assert run_cema("lock", "--check", cwd=folder).returncode == 0
        assert run_cema("sync", cwd=folder).stdout.strip().endswith("up to date.")
    assert staging_entries(store) == []


# --- gc against a running sync ------------------------------------------------------------------


def test_gc_during_a_sync_keeps_what_the_sync_just_built(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, poll_until
) -> None:
    extra = """\
  aaa:
            conda: [python, "cemademo=2.0"]
        """
    folder = make_project(gated_yaml(local_channel, extra_env=extra))
    run_cema("lock", cwd=folder)
    home = open_gate(tmp_path)
    # `aaa` is built first (name order), then `gated` waits at the gate before its receipt
    proc = start_sync(folder, store, tmp_path / "sync.log", home)
    try:
        poll_until((home / GATE_DIR / "waiting").exists, timeout_s=60, what="the gate")
        assert len(store.inventory()) == 1  # aaa is built and ready
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        gc = run_cema("gc", cwd=elsewhere)
        (home / GATE_DIR / "hold").unlink()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert proc.returncode == 0
    assert "0 unused prefix(es) removed." in gc.stdout, gc.stdout
    aaa = cema.Project.load(folder, store=store).prefix("aaa")
    assert (aaa / RECEIPT_NAME).is_file()
