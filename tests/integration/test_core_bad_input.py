"""Hostile input through the real CLI: a clear `error:` + `hint:`, exit 1, nothing half written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import cema
from cema.model.hashing import content_hash
from cema.model.lock import with_records_hash


def assert_user_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 1, ``error:`` first, a ``hint:``, no traceback, and each fragment in stderr."""
    detail = f"\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    assert proc.returncode == 1, detail
    assert proc.stderr.startswith("error: "), detail
    assert "\nhint: " in proc.stderr, detail
    assert "Traceback" not in proc.stderr, detail
    for fragment in fragments:
        assert fragment in proc.stderr, f"{fragment!r} not in stderr{detail}"


def assert_nothing_built(store: cema.Store) -> None:
    """No prefix that looks ready, and no half-built one or staging folder left behind."""
    assert store.inventory() == {}
    for folder in (store.envs_dir, store.root / "staging"):
        leftovers = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        assert leftovers == [], f"left in {folder}: {leftovers}"


def good_yaml(channel: Path, demo: str = "1.0") -> str:
    return f"""\
        version: 1
        channels: ["{channel}"]
        environments:
          demo:
            conda: [python, "cemademo={demo}", cemahello]
        """


# --- cema.yaml ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("lock",), ("sync",), ("plan",)])
def test_malformed_yaml_names_the_file_and_line(
    command: tuple[str, ...], make_project, run_cema, store
) -> None:
    folder = make_project(
        """\
        version: 1
        environments:
          demo:
            conda: [python, cemademo
            pip: []
        """
    )
    proc = run_cema(*command, cwd=folder, check=False)
    assert_user_error(proc, "not valid YAML", f"{folder / 'cema.yaml'}:")
    line = int(proc.stderr.split(f"{folder / 'cema.yaml'}:", 1)[1].split(":", 1)[0])
    assert line in (4, 5)  # the unclosed list (its start or where it breaks)
    assert not (folder / "cema.lock").exists()
    assert_nothing_built(store)


def test_typo_key_is_named_with_its_path_and_the_closest_key(
    local_channel: Path, make_project, run_cema, store
) -> None:
    folder = make_project(
        f"""\
        version: 1
        channels: ["{local_channel}"]
        environments:
          demo:
            conda: [python]
            pipp: [six]
        """
    )
    proc = run_cema("sync", cwd=folder, check=False)
    assert_user_error(proc, "environments.demo.pipp", "'pip'", f"{folder / 'cema.yaml'}:6")
    assert not (folder / "cema.lock").exists()
    assert_nothing_built(store)


def test_unquoted_python_version_gets_a_hint_about_quoting(make_project, run_cema) -> None:
    folder = make_project(
        """\
        version: 1
        environments:
          demo:
            python: 3.10
        """
    )
    proc = run_cema("lock", cwd=folder, check=False)
    assert_user_error(proc, "environments.demo.python", 'python: "3.10"')
    assert not (folder / "cema.lock").exists()


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "x..y", "/abs"])
def test_path_traversal_env_names_are_refused(
    name: str, local_channel: Path, make_project, run_cema, store, tmp_path: Path
) -> None:
    folder = make_project(
        f"""\
        version: 1
        channels: ["{local_channel}"]
        environments:
          "{name}":
            conda: [python]
        """
    )
    proc = run_cema("sync", cwd=folder, check=False)
    assert_user_error(proc, "not a valid environment name", "no path separators")
    assert not (folder / "cema.lock").exists()
    assert not (tmp_path / "evil").exists()
    assert_nothing_built(store)


def test_unknown_env_is_refused_with_the_declared_names(
    local_channel: Path, make_project, run_cema, store
) -> None:
    folder = make_project(good_yaml(local_channel))
    for command in (("sync", "-e", "nope"), ("run", "nope", "--", "true")):
        proc = run_cema(*command, cwd=folder, check=False)
        assert_user_error(proc, "'nope'", "demo")
    assert not (folder / "cema.lock").exists()
    assert_nothing_built(store)
    # (`cema plan` reads the lock first: without one it says to lock, which is fine too)
    run_cema("lock", cwd=folder)
    proc = run_cema("plan", "-e", "nope", cwd=folder, check=False)
    assert_user_error(proc, "'nope'", "demo")
    proc = run_cema("sync", "-e", "dmeo", cwd=folder, check=False)
    assert_user_error(proc, "did you mean 'demo'?")


def test_missing_spec_file_points_at_cema_init(run_cema, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cema("sync", cwd=empty, check=False)
    assert_user_error(proc, "cema.yaml", "cema init")


# --- resolving ------------------------------------------------------------------------------------


def test_unsatisfiable_spec_writes_no_lock_and_keeps_a_good_one(
    local_channel: Path, make_project, run_cema, store
) -> None:
    folder = make_project(good_yaml(local_channel, demo="9.9"))
    proc = run_cema("sync", cwd=folder, check=False)
    assert_user_error(proc, "demo", "cemademo")
    assert not (folder / "cema.lock").exists()
    assert_nothing_built(store)

    # a good lock survives a failed re-lock byte for byte
    make_project(good_yaml(local_channel))
    run_cema("lock", cwd=folder)
    good = (folder / "cema.lock").read_bytes()
    make_project(good_yaml(local_channel, demo="9.9"))
    proc = run_cema("lock", cwd=folder, check=False)
    assert_user_error(proc, "cemademo")
    assert (folder / "cema.lock").read_bytes() == good
    assert sorted(p.name for p in folder.iterdir()) == ["cema.lock", "cema.yaml"]


EXIT_RACE_RUNS = 16


def _exit_codes(argv: list[str], folder: Path, env: dict[str, str]) -> list[int]:
    """Run ``argv`` EXIT_RACE_RUNS times, two at a time (a loaded machine widens the race)."""
    codes: list[int] = []
    for _ in range(EXIT_RACE_RUNS // 2):
        procs = [
            subprocess.Popen(
                argv, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for _ in range(2)
        ]
        codes += [p.wait(timeout=120) for p in procs]
    return codes


@pytest.mark.slow
@pytest.mark.parametrize(
    "entry",
    ["python -m cema", "cema script"],
)
def test_a_failed_solve_exits_1_and_never_crashes(
    entry: str, local_channel: Path, make_project, store
) -> None:
    """Right after a solve, exiting used to crash in py-rattler's threads (SIGSEGV, SIGABRT)."""
    from tests.conftest import cema_argv, cema_environ

    folder = make_project(good_yaml(local_channel, demo="9.9"))
    if entry == "python -m cema":
        argv = cema_argv("lock")
    else:
        script = Path(sys.executable).with_name("cema")
        if not script.is_file():
            pytest.skip(f"no `cema` console script beside {sys.executable}")
        argv = [str(script), "lock"]
    codes = _exit_codes(argv, folder, cema_environ(store.root))
    assert codes == [1] * EXIT_RACE_RUNS, f"exit codes (negative: killed by signal): {codes}"


def test_missing_channel_is_a_clear_error(make_project, run_cema, store, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-channel"
    folder = make_project(
        f"""\
        version: 1
        channels: ["{missing}"]
        environments:
          demo:
            conda: [python]
        """
    )
    proc = run_cema("sync", cwd=folder, check=False)
    assert_user_error(proc, "no-such-channel")
    assert not (folder / "cema.lock").exists()
    assert not missing.exists()
    assert_nothing_built(store)


# --- cema.lock ------------------------------------------------------------------------------------


def _cemahello_record(doc: dict) -> dict:
    records = next(iter(doc["environments"]["demo"]["platforms"].values()))["conda"]
    return next(r for r in records if r["name"] == "cemahello")


def test_hand_edited_lock_is_detected_by_its_content_hash(
    local_channel: Path, make_project, run_cema, store
) -> None:
    folder = make_project(good_yaml(local_channel))
    run_cema("lock", cwd=folder)
    lock = folder / "cema.lock"
    text = lock.read_text()
    sha = _cemahello_record(yaml.safe_load(text))["sha256"]
    lock.write_text(text.replace(sha, "0" * 64))
    for command in (("sync", "--frozen"), ("sync", "--locked"), ("plan",), ("lock", "--check")):
        proc = run_cema(*command, cwd=folder, check=False)
        assert_user_error(proc, "edited by hand", "cema lock")
    assert_nothing_built(store)
    # a plain sync may refuse too, or resolve again from the channel: never install the forgery
    proc = run_cema("sync", cwd=folder, check=False)
    if proc.returncode != 0:
        assert_user_error(proc, "edited by hand")
        assert_nothing_built(store)
    else:
        assert "cema.lock" in proc.stderr  # it said it did not trust the lock
        assert _cemahello_record(yaml.safe_load(lock.read_text()))["sha256"] == sha


def test_lock_with_a_consistent_but_wrong_sha256_fails_at_install(
    local_channel: Path, make_project, run_cema, store
) -> None:
    """A forged record whose content-hash was recomputed: the archive check still catches it."""
    folder = make_project(good_yaml(local_channel))
    run_cema("lock", cwd=folder)
    lock = folder / "cema.lock"
    doc = yaml.safe_load(lock.read_text())
    _cemahello_record(doc)["sha256"] = "ab" * 32
    for plat, content in doc["environments"]["demo"]["platforms"].items():
        content["content-hash"] = content_hash(
            kind=doc["environments"]["demo"]["kind"],
            platform=plat,
            conda=content["conda"],
            pip=content["pip"],
        )
        # and the records-hash, which covers every field: a forger who recomputes both
        stamped = with_records_hash("demo", doc["environments"]["demo"], plat, content)
        content["records-hash"] = stamped["records-hash"]
    lock.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = run_cema("sync", "--frozen", cwd=folder, check=False)
    assert_user_error(proc, "sha256", "cemahello")
    assert_nothing_built(store)
    # the honest lock still syncs into the same store afterwards
    run_cema("lock", "--upgrade", cwd=folder)
    run_cema("sync", cwd=folder)
    assert len(store.inventory()) == 1


def test_structurally_broken_lock_names_the_problem(
    local_channel: Path, make_project, run_cema, store
) -> None:
    folder = make_project(good_yaml(local_channel))
    run_cema("lock", cwd=folder)
    lock = folder / "cema.lock"
    doc = yaml.safe_load(lock.read_text())
    del _cemahello_record(doc)["url"]
    lock.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = run_cema("sync", "--frozen", cwd=folder, check=False)
    assert_user_error(proc, "not a valid Cema lock", "cema lock")
    lock.write_text("version: 1\nenvironments: [not, a, mapping\n")
    proc = run_cema("sync", "--frozen", cwd=folder, check=False)
    assert_user_error(proc, "cema.lock")
    assert_nothing_built(store)


def test_locked_and_check_refuse_a_stale_lock(
    local_channel: Path, make_project, run_cema, store
) -> None:
    folder = make_project(good_yaml(local_channel))
    run_cema("lock", cwd=folder)
    make_project(good_yaml(local_channel, demo="2.0"))
    # a plain `cema plan` plans from a new resolution instead (tests/integration/test_cli_output)
    for command in (("lock", "--check"), ("sync", "--locked"), ("plan", "--locked")):
        proc = run_cema(*command, cwd=folder, check=False)
        assert_user_error(proc, "out of date", "demo", "cema lock")
    assert_nothing_built(store)


def test_run_before_sync_syncs_first(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(good_yaml(local_channel))
    proc = run_cema("run", "demo", "--", "cemahello", cwd=folder)
    prefix = cema.Project.load(folder, store=store).prefix("demo")
    assert proc.stdout == f"cemahello 1.0 installed in {prefix}\n"  # the sync spoke on stderr
    assert "lock: cema.lock updated" in proc.stderr


def test_run_frozen_without_a_lock_refuses(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(good_yaml(local_channel))
    proc = run_cema("run", "--frozen", "demo", "--", "true", cwd=folder, check=False)
    assert_user_error(proc, "cema.lock")
    assert not (folder / "cema.lock").exists()
    assert_nothing_built(store)


def test_run_locked_on_a_stale_lock_refuses(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(good_yaml(local_channel))
    run_cema("lock", cwd=folder)
    lock_text = (folder / "cema.lock").read_text()
    make_project(good_yaml(local_channel, demo="2.0"))
    proc = run_cema("run", "--locked", "demo", "--", "true", cwd=folder, check=False)
    assert_user_error(proc, "out of date")
    assert (folder / "cema.lock").read_text() == lock_text
    assert_nothing_built(store)


# --- usage errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("sync", "--bogus"),
        ("sync", "--locked", "--frozen"),
        ("frobnicate",),
        ("run",),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], run_cema, tmp_path: Path) -> None:
    proc = run_cema(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "usage:" in proc.stderr
    assert "Traceback" not in proc.stderr
