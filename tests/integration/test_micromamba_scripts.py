"""Micromamba scripts end to end: bash runs them against the test double (and a real micromamba)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

import cema
from cema.engines.uv import uv_bin
from cema.store import RECEIPT_NAME, Receipt
from tests.channel_builder import GATE_DIR
from tests.conftest import cema_argv, cema_environ
from tests.integration import micromamba_fixtures

# the fixtures of tests/integration/micromamba_fixtures.py (the test double, a real micromamba)
micromamba_double = micromamba_fixtures.micromamba_double
micromamba = micromamba_fixtures.micromamba

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the scripts need bash")

#: a store path a script must quote right: spaces, quotes, parentheses, $ and a backtick
HOSTILE = 'st ore\'s "q" (1) $HOME `x`'


def demo_yaml(channel: Path, *, demo: str = "1.0", extra: str = "", pip: str = "") -> str:
    return f"""\
        version: 1
        channels: ["{channel}"]
        environments:
          demo:
            conda: [python, "cemademo={demo}", cemahello]
            {pip}
        {extra}"""


def receipt_of(prefix: Path) -> Receipt:
    return Receipt.from_json((prefix / RECEIPT_NAME).read_text("utf-8"))


def same_content(a: Receipt, b: Receipt) -> bool:
    fields = ("address", "kind", "platform", "conda", "pip", "python")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def tree(prefix: Path) -> list[str]:
    return sorted(
        str(p.relative_to(prefix))
        for p in prefix.rglob("*")
        if "__pycache__" not in p.parts and p.name != RECEIPT_NAME
    )


def plan_json(run_cema, folder: Path, *store_args: str) -> list[dict[str, object]]:
    return json.loads(run_cema(*store_args, "plan", "--json", cwd=folder).stdout)


# --- the engine through `cema sync` ----------------------------------------------------------


def test_micromamba_builds_what_the_embedded_engine_reuses(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, micromamba
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("lock", cwd=folder)
    hostile = cema.Store(tmp_path / HOSTILE)
    args = ("--store", str(hostile.root))

    out = run_cema(*args, "-v", "sync", "--micromamba", micromamba, cwd=folder)
    assert out.stdout.startswith("create  demo (conda) -> ")
    assert "==> create demo" in out.stderr  # the script's output streams through logging
    prefix = cema.Project.load(folder, store=hostile).prefix("demo")
    assert prefix.parent == hostile.envs_dir
    built = receipt_of(prefix)
    assert built.engine == "micromamba"
    assert (prefix / ".cema-activation.json").is_file()  # cached by the hook, before the receipt

    # the embedded engine sees a ready prefix: reuse, nothing built
    assert [a["action"] for a in plan_json(run_cema, folder, *args)] == ["reuse"]
    assert "1 environment(s) up to date" in run_cema(*args, "sync", cwd=folder).stdout
    hello = run_cema(*args, "run", "demo", "--", "cemahello", cwd=folder)
    assert "cemahello 1.0 installed in " in hello.stdout

    # the embedded engine builds the same prefix (address, layout, conda-meta, receipt)
    run_cema("sync", "--engine", "rattler", cwd=folder)
    embedded = cema.Project.load(folder, store=store).prefix("demo")
    assert embedded.name == prefix.name
    assert same_content(receipt_of(embedded), built)
    assert tree(embedded) == tree(prefix)
    assert sorted(p.name for p in (prefix / "conda-meta").glob("*.json")) == [
        "cemademo-1.0-py_0.json",
        "cemahello-1.0-0.json",
        f"python-{built.python}-cema_host_0.json",
    ]

    # and the other way round: micromamba finds the embedded engine's prefix ready (never runs)
    out = run_cema("sync", "--micromamba", tmp_path / "no-such-micromamba", cwd=folder)
    assert "up to date" in out.stdout


def test_update_and_prune_run_in_one_script(
    local_channel: Path, make_project, run_cema, store: cema.Store, micromamba
) -> None:
    folder = make_project(demo_yaml(local_channel, extra="engine: micromamba"))
    env = {"CEMA_MICROMAMBA": str(micromamba)}  # `engine:` in cema.yaml, binary from the env
    run_cema("sync", cwd=folder, env=env)
    old = cema.Project.load(folder, store=store).prefix("demo")
    assert receipt_of(old).engine == "micromamba"

    make_project(demo_yaml(local_channel, demo="2.0", extra="engine: micromamba"))
    out = run_cema("sync", "--prune", cwd=folder, env=env)
    assert "update  demo (conda, build)" in out.stdout
    assert "~ cemademo 1.0 -> 2.0" in out.stdout
    new = cema.Project.load(folder, store=store).prefix("demo")
    assert new != old and receipt_of(new).packages()["cemademo"] == "2.0"
    assert not old.exists()  # the script removed it (receipt first)
    assert sorted(p.name for p in store.envs_dir.iterdir()) == [new.name]


def test_a_failing_step_stops_the_script_and_leaves_no_receipt(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, micromamba
) -> None:
    channel = tmp_path / "channel"
    shutil.copytree(local_channel, channel)
    folder = make_project(
        f"""\
        version: 1
        channels: ["{channel}"]
        environments:
          a_broken:
            conda: [cemahello]
          b_fine:
            conda: [python]
        """
    )
    run_cema("lock", cwd=folder)
    # the archive no longer has the locked sha256: micromamba must refuse it
    (archive,) = channel.glob("noarch/cemahello-*.tar.bz2")
    archive.write_bytes(b"not the locked archive")

    out = run_cema("sync", "--micromamba", micromamba, cwd=folder, check=False)
    assert out.returncode == 1
    assert "error: the micromamba script failed (exit code" in out.stderr
    assert "cema plan --script bash" in out.stderr  # the hint
    assert store.inventory() == {}
    # the broken env's unfinished prefix was removed; the script stopped before b_fine
    assert not store.envs_dir.is_dir() or list(store.envs_dir.iterdir()) == []
    with pytest.raises(cema.EnvNotFoundError):
        cema.Project.load(folder, store=store).prefix("b_fine")


def test_an_unfinished_prefix_is_cleared_before_the_build(
    local_channel: Path, make_project, run_cema, store: cema.Store, micromamba
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("lock", cwd=folder)
    (action,) = plan_json(run_cema, folder)
    leftover = store.prefix(str(action["address"]))
    (leftover / "bin").mkdir(parents=True)
    (leftover / "bin" / "junk").write_text("left by a killed build")

    out = run_cema("-v", "sync", "--micromamba", micromamba, cwd=folder)
    assert "removing the unfinished prefix" in out.stderr
    assert not (leftover / "bin" / "junk").exists()
    assert (leftover / RECEIPT_NAME).is_file()


def test_kill_before_the_receipt_then_sync_again(
    local_channel: Path,
    make_project,
    run_cema,
    store: cema.Store,
    tmp_path: Path,
    poll_until,
    micromamba_double: Path,
) -> None:
    folder = make_project(
        f"""\
        version: 1
        channels: ["{local_channel}"]
        environments:
          gated:
            conda: [python, cemahello, cemagate]
        """
    )
    run_cema("lock", cwd=folder)
    home = tmp_path / "home"
    (home / GATE_DIR).mkdir(parents=True)
    (home / GATE_DIR / "hold").touch()
    with (tmp_path / "killed.log").open("wb") as log:
        proc = subprocess.Popen(
            cema_argv("-vv", "sync", "--micromamba", micromamba_double),
            cwd=folder,
            env=cema_environ(store.root, {"HOME": str(home)}),
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    try:
        # the activation hook runs activate.d after the install, before the receipt
        poll_until((home / GATE_DIR / "waiting").exists, timeout_s=60, what="the gate")
        (prefix,) = store.envs_dir.iterdir()
        assert (prefix / "bin" / "cemahello").is_file()
        assert not (prefix / RECEIPT_NAME).exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert store.inventory() == {}  # a killed build never looks ready
    (home / GATE_DIR / "hold").unlink()

    out = run_cema("-v", "sync", "--micromamba", micromamba_double, cwd=folder)
    assert "removing the unfinished prefix" in out.stderr
    assert cema.Project.load(folder, store=store).prefix("gated") == prefix
    assert (prefix / RECEIPT_NAME).is_file()


# --- the script by hand --------------------------------------------------------------------


def run_script(script: Path, *, binary: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CEMA_", "CONDA_"))}
    env.update({"CEMA_MICROMAMBA": str(binary), "CEMA_UV": str(uv_bin())})
    return subprocess.run(
        ["bash", str(script)], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_the_printed_script_run_by_hand_builds_the_same_prefix(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, micromamba
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("lock", cwd=folder)
    hostile = cema.Store(tmp_path / HOSTILE)
    args = ("--store", str(hostile.root))
    text = run_cema(*args, "plan", "--script", "bash", cwd=folder).stdout
    script = tmp_path / "sync.sh"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0

    done = run_script(script, binary=micromamba, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "==> ready demo" in done.stdout
    (prefix,) = hostile.envs_dir.iterdir()
    assert receipt_of(prefix).engine == "micromamba"
    assert not (prefix / ".cema-activation.json").exists()  # by hand: computed on first use

    # cema sync sees it ready, registers it, and runs in it
    assert "up to date" in run_cema(*args, "sync", cwd=folder).stdout
    assert cema.Project.load(folder, store=hostile).prefix("demo") == prefix
    hello = run_cema(*args, "run", "demo", "--", "cemahello", cwd=folder)
    assert "cemahello 1.0 installed in" in hello.stdout

    # a second run of the same script finds every prefix ready and changes nothing
    again = run_script(script, binary=tmp_path / "never-called", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "was built by another sync meanwhile" in again.stdout


def test_the_script_waits_for_the_prefix_lock_and_checks_again(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, poll_until
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("lock", cwd=folder)
    script = tmp_path / "sync.sh"
    script.write_text(run_cema("plan", "--script", "bash", cwd=folder).stdout)
    project = cema.Project.load(folder, store=store)
    (address,) = {r.address for r in project.targets(project.read_lock())}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CEMA_", "CONDA_"))}
    env["CEMA_MICROMAMBA"] = str(tmp_path / "never-called")
    out_file = tmp_path / "script.out"
    with store.prefix_lock(address), out_file.open("w") as out:
        proc = subprocess.Popen(["bash", str(script)], stdout=out, stderr=out, env=env)
        poll_until(lambda: "==> create demo" in out_file.read_text(), what="the script")
        # while we hold the lock, another engine publishes the prefix
        assert proc.poll() is None  # blocked on flock
        prefix = store.prefix(address)
        prefix.mkdir(parents=True)
        store.write_receipt(
            prefix, Receipt(address=address, kind="conda", platform="linux-64", engine="test")
        )
    assert proc.wait(timeout=60) == 0, out_file.read_text()
    assert "was built by another sync meanwhile" in out_file.read_text()


# --- pip layers and venvs (PyPI) --------------------------------------------------------------


@pytest.mark.network
def test_pip_layer_and_venv_through_the_script(
    local_channel: Path, make_project, run_cema, store: cema.Store, micromamba
) -> None:
    folder = make_project(
        f"""\
        version: 1
        channels: ["{local_channel}"]
        environments:
          mixed:
            conda: [python]
            pip: ["six==1.16.0"]
          tools:
            pip: ["six==1.16.0"]
        """
    )
    run_cema("lock", cwd=folder)
    run_cema("sync", "--micromamba", micromamba, cwd=folder)
    project = cema.Project.load(folder, store=store)
    for name, kind in (("mixed", "conda"), ("tools", "venv")):
        prefix = project.prefix(name)
        receipt = receipt_of(prefix)
        assert (receipt.kind, receipt.engine, receipt.pip) == (
            kind,
            "micromamba",
            (("six", "1.16.0"),),
        )
        shown = run_cema(
            "run", name, "--", "python", "-c", "import six; print(six.__file__)", cwd=folder
        )
        assert shown.stdout.strip().startswith(str(prefix))
    assert [a["action"] for a in plan_json(run_cema, folder)] == ["reuse", "reuse"]


# --- real conda-forge archives ----------------------------------------------------------------


@pytest.mark.shared
def test_conda_forge_xz_through_the_script(
    conda_forge_channel: Path, make_project, run_cema, store: cema.Store, micromamba
) -> None:
    from cema.spec import current_platform

    if current_platform() != "linux-64":
        pytest.skip("the conda-forge test archives are linux-64 builds")
    folder = make_project(
        f"""\
        version: 1
        channels: ["{conda_forge_channel}"]
        platforms: [linux-64]
        environments:
          xz:
            conda: [xz]
        """
    )
    run_cema("sync", "--micromamba", micromamba, cwd=folder)
    prefix = cema.Project.load(folder, store=store).prefix("xz")
    version = subprocess.run(
        [str(prefix / "bin" / "xz"), "--version"], capture_output=True, text=True, check=True
    )
    assert "5.2.6" in version.stdout
    assert [a["action"] for a in plan_json(run_cema, folder)] == ["reuse"]
