"""What the CLI says: lock changes, plans of stale locks, ``--json`` documents checked against
their schemas in ``specs/``, environment variables for the global flags, small courtesies.

Every test runs the real ``cema`` in a subprocess, on the hand-made local channel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import cema
from tests.channel_builder import host_platform

SPECS = Path(__file__).resolve().parents[2] / "specs"
PLATFORM = host_platform()


def yaml(channel: Path, *, demo: str = "1.0", extra: str = "") -> str:
    return f"""\
        version: 1
        channels: ["{channel}"]
        environments:
          demo:
            conda: [python, "cemademo={demo}"]
          hello:
            conda: [cemahello]
        {extra}"""


def checked(stdout: str, schema: str) -> Any:
    """The JSON document on stdout, validated against ``specs/<schema>``."""
    document = json.loads(stdout)
    jsonschema.validate(document, json.loads((SPECS / schema).read_text()))
    return document


# --- say what changed ---------------------------------------------------------------------------


def test_lock_prints_what_changed_per_env_and_platform(
    local_channel: Path, make_project, run_cema
) -> None:
    folder = make_project(yaml(local_channel))
    first = run_cema("lock", cwd=folder).stdout
    assert f"demo [{PLATFORM}] (added):" in first
    assert "  + cemademo 1.0" in first and "  + cemahello 1.0" in first
    assert "locked 2 environments into" in first

    again = run_cema("lock", cwd=folder).stdout
    assert again.splitlines()[0] == "no change"

    make_project(yaml(local_channel, demo="2.0"))
    moved = run_cema("lock", cwd=folder).stdout
    assert moved.splitlines()[:2] == [f"demo [{PLATFORM}]:", "  ~ cemademo 1.0 -> 2.0"]
    assert "hello" not in moved  # unchanged envs are not listed

    make_project(yaml(local_channel))
    document = checked(run_cema("lock", "--json", cwd=folder).stdout, "cli-lock.schema.json")
    assert document["written"] is True and document["changed"] is True
    demo = next(e for e in document["envs"] if e["name"] == "demo")
    assert demo["status"] == "changed" and demo["spec_changed"] is True
    (platform,) = demo["platforms"]
    assert platform["changed"] == [
        {
            "name": "cemademo",
            "old_version": "2.0",
            "new_version": "1.0",
            "old_build": platform["changed"][0]["old_build"],
            "new_build": platform["changed"][0]["new_build"],
        }
    ]
    check = checked(
        run_cema("lock", "--check", "--json", cwd=folder).stdout, "cli-lock.schema.json"
    )
    assert check["written"] is False and check["changed"] is False


def test_a_relocking_sync_says_so_on_stderr(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(yaml(local_channel))
    first = run_cema("sync", cwd=folder)
    assert "lock: cema.lock updated (2 envs)" in first.stderr
    assert "    + cemademo 1.0" in first.stderr
    assert "lock:" not in first.stdout  # stdout is the plan

    noop = run_cema("sync", cwd=folder)
    assert "lock:" not in noop.stderr
    assert noop.stdout.strip() == "2 environment(s) up to date."

    make_project(yaml(local_channel, demo="2.0"))
    moved = run_cema("sync", "--json", cwd=folder)
    assert "lock: cema.lock updated (1 env)" in moved.stderr
    assert "~ cemademo 1.0 -> 2.0" in moved.stderr
    document = checked(moved.stdout, "cli-sync.schema.json")
    assert document["lock"]["written"] is True
    assert [e["name"] for e in document["lock"]["envs"]] == ["demo"]
    actions = {a["env"]: a for a in document["actions"]}
    assert actions["demo"]["action"] == "update" and actions["hello"]["action"] == "reuse"
    assert actions["demo"]["changed"][0][:3] == ["cemademo", "1.0", "2.0"]
    envs = {e["name"]: e for e in document["envs"]}
    for name in ("demo", "hello"):
        prefix = Path(envs[name]["prefix"])
        assert prefix == cema.Project.load(folder, store=store).prefix(name)
        assert actions[name]["prefix"] == str(prefix)

    quiet = run_cema("-q", "sync", cwd=folder)
    assert quiet.stdout == "" and quiet.stderr == ""


# --- plan on a stale lock -----------------------------------------------------------------------


def test_plan_on_a_stale_lock_shows_what_sync_would_do_without_writing(
    local_channel: Path, make_project, run_cema
) -> None:
    folder = make_project(yaml(local_channel))
    run_cema("sync", cwd=folder)
    make_project(yaml(local_channel, demo="2.0"))
    lock_text = (folder / "cema.lock").read_text()

    human = run_cema("plan", cwd=folder)
    assert "not written" in human.stderr and "~ cemademo 1.0 -> 2.0" in human.stderr
    assert "update  demo (conda, build)" in human.stdout
    assert "~ cemademo 1.0 -> 2.0" in human.stdout

    document = checked(run_cema("plan", "--json", cwd=folder).stdout, "cli-plan.schema.json")
    assert document["version"] == 1
    assert document["lock"]["written"] is False and document["lock"]["changed"] is True
    update = next(a for a in document["actions"] if a["env"] == "demo")
    assert update["action"] == "update" and update["prefix"].endswith(update["address"])
    assert Path(update["from_prefix"]).is_dir() and not Path(update["prefix"]).exists()
    assert (folder / "cema.lock").read_text() == lock_text  # plan never writes the lock

    refused = run_cema("plan", "--locked", cwd=folder, check=False)
    assert refused.returncode == 1 and "out of date" in refused.stderr
    assert "hint: run `cema lock`" in refused.stderr
    frozen = checked(
        run_cema("plan", "--frozen", "--json", cwd=folder).stdout, "cli-plan.schema.json"
    )
    assert frozen["lock"] is None and {a["action"] for a in frozen["actions"]} == {"reuse"}
    assert (folder / "cema.lock").read_text() == lock_text


# --- --json of list and gc -----------------------------------------------------------------------


def test_list_json_and_one_package(local_channel: Path, make_project, run_cema) -> None:
    folder = make_project(yaml(local_channel))
    before = checked(run_cema("list", "--json", cwd=folder).stdout, "cli-list.schema.json")
    assert [(e["name"], e["synced"], e["prefix"]) for e in before["envs"]] == [
        ("demo", False, None),
        ("hello", False, None),
    ]
    run_cema("sync", cwd=folder)
    listing = run_cema("list", cwd=folder).stdout
    hello = next(line for line in listing.splitlines() if line.startswith("hello"))
    assert " 1 package " in hello and "packages" not in hello
    assert "2 packages" in listing  # demo: python and cemademo
    after = checked(run_cema("list", "--json", cwd=folder).stdout, "cli-list.schema.json")
    rows = {e["name"]: e for e in after["envs"]}
    assert rows["hello"]["packages"] == 1 and Path(rows["hello"]["prefix"]).is_dir()
    assert after["lock"] == str(folder / "cema.lock")


def test_gc_dry_run_json_lists_without_removing(
    local_channel: Path, make_project, run_cema
) -> None:
    folder = make_project(yaml(local_channel))
    run_cema("sync", cwd=folder)
    empty = checked(run_cema("gc", "--dry-run", "--json", cwd=folder).stdout, "cli-gc.schema.json")
    assert empty["unused"] == [] and empty["dry_run"] is True
    old = next(
        Path(e["prefix"])
        for e in json.loads(run_cema("list", "--json", cwd=folder).stdout)["envs"]
        if e["name"] == "demo"
    )
    make_project(yaml(local_channel, demo="2.0"))
    run_cema("sync", cwd=folder)
    document = checked(
        run_cema("gc", "--dry-run", "--json", cwd=folder).stdout, "cli-gc.schema.json"
    )
    assert document["unused"] == [{"address": old.name, "prefix": str(old)}]
    assert document["removed"] == [] and old.is_dir()
    removed = checked(run_cema("gc", "--json", cwd=folder).stdout, "cli-gc.schema.json")
    assert removed["removed"] == document["unused"] and not old.exists()


# --- environment variables ---------------------------------------------------------------------


def test_environment_variables_stand_for_the_global_flags(
    local_channel: Path, make_project, run_cema, tmp_path: Path
) -> None:
    folder = make_project(yaml(local_channel))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other_store = tmp_path / "other-store"

    # CEMA_PROJECT and CEMA_STORE, from a folder with no cema.yaml
    env = {"CEMA_PROJECT": str(folder), "CEMA_STORE": str(other_store)}
    run_cema("sync", cwd=elsewhere, env=env)
    listing = json.loads(run_cema("list", "--json", cwd=elsewhere, env=env).stdout)
    assert listing["store"] == str(other_store)
    assert all(e["prefix"].startswith(str(other_store)) for e in listing["envs"])
    # the command line wins over the variables
    flags = ("--store", str(tmp_path / "store"), "--project", str(folder))
    listing = json.loads(run_cema(*flags, "list", "--json", cwd=elsewhere, env=env).stdout)
    assert listing["store"] == str(tmp_path / "store")
    assert [e["synced"] for e in listing["envs"]] == [False, False]

    # CEMA_LOCKED refuses a stale lock; CEMA_FROZEN installs it as it is; --frozen beats LOCKED
    make_project(yaml(local_channel, demo="2.0"))
    locked = run_cema("sync", cwd=folder, env={"CEMA_LOCKED": "1"}, check=False)
    assert locked.returncode == 1 and "out of date" in locked.stderr
    lock = run_cema("lock", cwd=folder, env={"CEMA_LOCKED": "true"}, check=False)
    assert lock.returncode == 1 and "out of date" in lock.stderr  # `lock --locked` = --check
    frozen = run_cema(
        "sync", cwd=folder, env={"CEMA_FROZEN": "yes", "CEMA_STORE": str(other_store)}
    )
    assert "lock:" not in frozen.stderr and "up to date" in frozen.stdout
    run_cema("plan", "--frozen", cwd=folder, env={"CEMA_LOCKED": "1"})
    assert "cemademo=2.0" not in (folder / "cema.lock").read_text()

    # CEMA_NO_PROGRESS is read (no TTY here to draw on: the value is checked)
    run_cema("sync", "--frozen", cwd=folder, env={"CEMA_NO_PROGRESS": "1"})
    bad = run_cema("sync", cwd=folder, env={"CEMA_NO_PROGRESS": "maybe"}, check=False)
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == [
        "error: CEMA_NO_PROGRESS='maybe' is not a yes or no.",
        "hint: set CEMA_NO_PROGRESS to 1 or 0 (or unset it).",
    ]


# --- small fixes ---------------------------------------------------------------------------------


def test_init_quiet_prints_nothing(run_cema, tmp_path: Path) -> None:
    quiet = run_cema("init", "-q", cwd=tmp_path)
    assert quiet.stdout == "" and quiet.stderr == ""
    assert (tmp_path / "cema.yaml").is_file()


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("init", "Write a starting cema.yaml"),
        ("lock", "print what changed"),
        ("plan", "never written"),
        ("sync", "Build or reuse a prefix"),
        ("list", "not synced"),
        ("verify", "Exit 1 when one is damaged"),
        ("run", "activated"),
        ("gc", "running worker"),
    ],
)
def test_every_command_help_has_a_description(
    command: str, words: str, run_cema, tmp_path: Path
) -> None:
    page = " ".join(run_cema(command, "--help", cwd=tmp_path).stdout.split())
    assert words in page
