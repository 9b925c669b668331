"""micromamba end to end: the engine through `cema sync`, and the printed script run by bash.

Each test runs against the test double and against a real micromamba 2 (skipped, with the
reason, where there is none); see tests/integration/micromamba_fixtures.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import cema
from cema.engines.uv import uv_bin
from cema.model.receipt import Receipt
from cema.store import RECEIPT_NAME
from tests.channel_builder import GATE_DIR
from tests.conftest import cema_argv, cema_environ
from tests.integration import micromamba_fixtures

# the fixtures of tests/integration/micromamba_fixtures.py (the test double, a real micromamba)
micromamba_double = micromamba_fixtures.micromamba_double
real_micromamba = micromamba_fixtures.real_micromamba
micromamba = micromamba_fixtures.micromamba

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the scripts need bash")

#: a store path a script must quote right: spaces, quotes, parentheses, $ and a backtick
HOSTILE = 'st ore\'s "q" (1) $HOME `x`'
#: the files an installer writes for itself, not from the packages (rattler leaves a cache tag)
BOOKKEEPING = {"conda-meta/history", "CACHEDIR.TAG"}


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


def files_naming(prefix: Path, text: str) -> list[str]:
    """The files under ``prefix`` whose bytes contain ``text`` (symlinks not followed)."""
    needle = text.encode()
    return sorted(
        str(p.relative_to(prefix))
        for p in prefix.rglob("*")
        if p.is_file() and not p.is_symlink() and needle in p.read_bytes()
    )


def conda_meta(prefix: Path) -> list[str]:
    return sorted(p.name for p in (prefix / "conda-meta").glob("*.json"))


def plan_json(run_cema, folder: Path, *store_args: str) -> list[dict[str, object]]:
    return json.loads(run_cema(*store_args, "plan", "--json", cwd=folder).stdout)["actions"]


def assert_published_for_final(store: cema.Store, prefix: Path) -> None:
    """Built in staging for ``prefix``: every file names the final path, none the staging one.

    micromamba's ``conda-meta/history`` logs the command line, staging path included.
    """
    staging = store.root / "staging"
    assert not staging.is_dir() or list(staging.iterdir()) == []  # published by the rename
    assert [f for f in files_naming(prefix, str(staging)) if f not in BOOKKEEPING] == []
    assert str(prefix) in (prefix / "bin" / "cemahello").read_text("utf-8")


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
    assert "INFO: Linking cemahello-1.0-0" in out.stderr  # micromamba's output, through logging
    prefix = cema.Project.load(folder, store=hostile).prefix("demo")
    assert prefix.parent == hostile.envs_dir
    built = receipt_of(prefix)
    assert built.engine == "micromamba"
    assert (prefix / ".cema-activation.json").is_file()  # cached by the sync, before the receipt
    assert_published_for_final(hostile, prefix)
    assert (hostile.root / "micromamba" / "pkgs").is_dir()  # micromamba's own package cache

    # the embedded engine sees a ready prefix: reuse, nothing built
    assert [a["action"] for a in plan_json(run_cema, folder, *args)] == ["reuse"]
    assert "1 environment(s) up to date" in run_cema(*args, "sync", cwd=folder).stdout
    hello = run_cema(*args, "run", "demo", "--", "cemahello", cwd=folder)
    assert "cemahello 1.0 installed in " in hello.stdout
    shown = run_cema(*args, "run", "demo", "--", "python", "-c", "import cemademo", cwd=folder)
    assert shown.returncode == 0

    # the embedded engine builds the same prefix (address, layout, conda-meta, receipt)
    run_cema("sync", "--engine", "rattler", cwd=folder)
    embedded = cema.Project.load(folder, store=store).prefix("demo")
    assert embedded.name == prefix.name
    assert same_content(receipt_of(embedded), built)
    assert receipt_of(embedded).engine == "rattler"
    package_files = [f for f in tree(prefix) if f not in BOOKKEEPING]
    assert [f for f in tree(embedded) if f not in BOOKKEEPING] == package_files
    assert "bin/cemahello" in package_files
    assert (
        conda_meta(prefix)
        == conda_meta(embedded)
        == [
            "cemademo-1.0-py_0.json",
            "cemahello-1.0-0.json",
            f"python-{built.python}-cema_host_0.json",
        ]
    )

    # and the other way round: micromamba finds the embedded engine's prefix ready (never runs)
    out = run_cema("sync", "--micromamba", tmp_path / "no-such-micromamba", cwd=folder)
    assert "up to date" in out.stdout


def test_update_and_prune_through_the_engine(
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
    assert new != old
    assert receipt_of(new).packages()["cemademo"] == "2.0"
    assert receipt_of(new).engine == "micromamba"
    assert "cemademo-2.0-py_0.json" in conda_meta(new)
    assert not old.exists()
    assert sorted(p.name for p in store.envs_dir.iterdir()) == [new.name]
    assert_published_for_final(store, new)


def broken_channel_project(local_channel: Path, make_project, run_cema, tmp_path: Path) -> Path:
    """Two envs, ``a_broken`` (whose archive loses its locked sha256 after the lock) and
    ``b_fine``, locked from a copy of the local channel."""
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
    return folder


def test_a_failing_build_leaves_no_prefix_and_no_receipt(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, micromamba
) -> None:
    folder = broken_channel_project(local_channel, make_project, run_cema, tmp_path)

    out = run_cema("sync", "--micromamba", micromamba, cwd=folder, check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    # one error line naming the env and micromamba's cause, a hint, no output dump, no traceback
    (error,) = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith("error: micromamba could not build environment 'a_broken' (exit code")
    assert "sha256" in error.lower()  # micromamba's own words
    assert [line for line in out.stderr.splitlines() if not line.startswith("hint: ")] == [error]
    assert store.inventory() == {}
    # nothing half-built anywhere: not published, and the staging folder was removed
    assert not store.envs_dir.is_dir() or list(store.envs_dir.iterdir()) == []
    staging = store.root / "staging"
    assert not staging.is_dir() or list(staging.iterdir()) == []
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
    assert "removing the incomplete prefix" in out.stderr
    assert not (leftover / "bin" / "junk").exists()
    assert receipt_of(leftover).engine == "micromamba"


def gated_project(local_channel: Path, make_project, run_cema, tmp_path: Path) -> tuple[Path, Path]:
    """``(folder, home)``: an env whose activation waits while ``home/cema-test-gate/hold`` is."""
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
    return folder, home


def kill_at_the_gate(
    proc: subprocess.Popen[bytes], store: cema.Store, home: Path, poll_until
) -> Path:
    """Wait until ``proc`` holds at the gate (installed, no receipt), kill it, return the prefix."""
    try:
        # activation scripts run after the install, before the receipt
        poll_until((home / GATE_DIR / "waiting").exists, timeout_s=120, what="the gate")
        (prefix,) = store.envs_dir.iterdir()
        assert (prefix / "bin" / "cemahello").is_file()
        assert not (prefix / RECEIPT_NAME).exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert store.inventory() == {}  # a killed build never looks ready
    (home / GATE_DIR / "hold").unlink()
    return prefix


def test_kill_before_the_receipt_then_sync_again(
    local_channel: Path,
    make_project,
    run_cema,
    store: cema.Store,
    tmp_path: Path,
    poll_until,
    micromamba,
) -> None:
    folder, home = gated_project(local_channel, make_project, run_cema, tmp_path)
    with (tmp_path / "killed.log").open("wb") as log:
        proc = subprocess.Popen(
            cema_argv("-vv", "sync", "--micromamba", micromamba),
            cwd=folder,
            env=cema_environ(store.root, {"HOME": str(home)}),
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    prefix = kill_at_the_gate(proc, store, home, poll_until)

    out = run_cema("-v", "sync", "--micromamba", micromamba, cwd=folder)
    assert "removing the incomplete prefix" in out.stderr
    assert cema.Project.load(folder, store=store).prefix("gated") == prefix
    assert receipt_of(prefix).engine == "micromamba"


# --- the printed script, run by bash ---------------------------------------------------------


def script_environ(binary: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CEMA_", "CONDA_"))}
    env.update({"CEMA_MICROMAMBA": str(binary), "CEMA_UV": str(uv_bin()), **extra})
    return env


def run_script(
    script: Path, *, binary: Path, cwd: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script)],
        cwd=cwd,
        env=script_environ(binary, **extra),
        capture_output=True,
        text=True,
        check=False,
    )


def write_script(run_cema, folder: Path, target: Path, *args: str) -> Path:
    """``cema [args] plan --script bash`` written to ``target`` (checked by ``bash -n``)."""
    store_args = [a for a in args if a != "--prune"]
    prune = ["--prune"] if "--prune" in args else []
    target.write_text(run_cema(*store_args, "plan", "--script", "bash", *prune, cwd=folder).stdout)
    assert subprocess.run(["bash", "-n", str(target)], check=False).returncode == 0
    return target


def test_the_printed_script_run_by_hand_builds_the_same_prefix(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, micromamba
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("lock", cwd=folder)
    hostile = cema.Store(tmp_path / HOSTILE)
    args = ("--store", str(hostile.root))
    script = write_script(run_cema, folder, tmp_path / "sync.sh", *args)

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


def test_update_and_prune_run_in_one_script(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, micromamba
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("lock", cwd=folder)
    first = run_script(
        write_script(run_cema, folder, tmp_path / "first.sh"), binary=micromamba, cwd=tmp_path
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "up to date" in run_cema("sync", cwd=folder).stdout  # registers the script's prefix
    old = cema.Project.load(folder, store=store).prefix("demo")
    assert receipt_of(old).engine == "micromamba"

    make_project(demo_yaml(local_channel, demo="2.0"))
    run_cema("lock", cwd=folder)
    script = write_script(run_cema, folder, tmp_path / "second.sh", "--prune")
    text = script.read_text()
    assert "# --- update demo" in text and f"# --- remove {old.name}" in text  # one script
    done = run_script(script, binary=micromamba, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "==> update demo" in done.stdout
    assert f"==> remove {old.name}" in done.stdout
    assert not old.exists()  # the script removed it (receipt first)
    (new,) = store.envs_dir.iterdir()
    assert new != old
    assert receipt_of(new).packages()["cemademo"] == "2.0"
    assert receipt_of(new).engine == "micromamba"
    assert "update  demo (conda, reuse)" in run_cema("sync", cwd=folder).stdout
    assert cema.Project.load(folder, store=store).prefix("demo") == new


def test_a_failing_step_stops_the_script_and_leaves_no_receipt(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, micromamba
) -> None:
    folder = broken_channel_project(local_channel, make_project, run_cema, tmp_path)
    script = write_script(run_cema, folder, tmp_path / "sync.sh")
    assert script.read_text().index("==> create a_broken") < script.read_text().index(
        "==> create b_fine"
    )

    done = run_script(script, binary=micromamba, cwd=tmp_path)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "==> create a_broken" in done.stdout
    assert "==> create b_fine" not in done.stdout  # the script stopped at the failing step
    assert "cema: done" not in done.stdout
    assert store.inventory() == {}
    # the broken env's unfinished prefix was removed; b_fine was never started
    assert not store.envs_dir.is_dir() or list(store.envs_dir.iterdir()) == []
    with pytest.raises(cema.EnvNotFoundError):
        cema.Project.load(folder, store=store).prefix("b_fine")


def test_the_script_clears_an_unfinished_prefix_before_the_build(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, micromamba
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("lock", cwd=folder)
    (action,) = plan_json(run_cema, folder)
    leftover = store.prefix(str(action["address"]))
    (leftover / "bin").mkdir(parents=True)
    (leftover / "bin" / "junk").write_text("left by a killed build")

    script = write_script(run_cema, folder, tmp_path / "sync.sh")
    done = run_script(script, binary=micromamba, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"cema: removing the unfinished prefix {leftover}" in done.stdout
    assert not (leftover / "bin" / "junk").exists()
    assert receipt_of(leftover).engine == "micromamba"


def test_kill_the_script_before_the_receipt_then_run_it_again(
    local_channel: Path,
    make_project,
    run_cema,
    store: cema.Store,
    tmp_path: Path,
    poll_until,
    micromamba,
) -> None:
    folder, home = gated_project(local_channel, make_project, run_cema, tmp_path)
    script = write_script(run_cema, folder, tmp_path / "sync.sh")
    # the hook (what `cema sync` used to set) runs the activation scripts before the receipt
    extra = {"HOME": str(home), "CEMA_HOOK_PYTHON": sys.executable}
    with (tmp_path / "killed.log").open("wb") as log:
        proc = subprocess.Popen(
            ["bash", str(script)],
            cwd=tmp_path,
            env=script_environ(micromamba, **extra),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    prefix = kill_at_the_gate(proc, store, home, poll_until)

    done = run_script(script, binary=micromamba, cwd=tmp_path, **extra)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"cema: removing the unfinished prefix {prefix}" in done.stdout
    assert receipt_of(prefix).engine == "micromamba"
    assert (prefix / ".cema-activation.json").is_file()
    assert "up to date" in run_cema("sync", cwd=folder).stdout
    assert cema.Project.load(folder, store=store).prefix("gated") == prefix


def test_the_script_waits_for_the_prefix_lock_and_checks_again(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, poll_until
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("lock", cwd=folder)
    script = write_script(run_cema, folder, tmp_path / "sync.sh")
    project = cema.Project.load(folder, store=store)
    (address,) = {r.address for r in project.targets(project.read_lock())}
    env = script_environ(tmp_path / "never-called")
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


# --- pip layers and venvs (PyPI), real conda-forge archives: both ways ----------------------


def build(how: str, run_cema, folder: Path, micromamba: Path, tmp_path: Path) -> None:
    """Build the project's envs with micromamba: ``cema sync``, or its printed script by bash."""
    if how == "engine":
        run_cema("sync", "--micromamba", micromamba, cwd=folder)
        return
    run_cema("lock", cwd=folder)
    script = write_script(run_cema, folder, tmp_path / "sync.sh")
    done = run_script(script, binary=micromamba, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "up to date" in run_cema("sync", cwd=folder).stdout  # registered, nothing built


@pytest.mark.network
@pytest.mark.parametrize("how", ["engine", "script"])
def test_pip_layer_and_venv(
    local_channel: Path,
    make_project,
    run_cema,
    store: cema.Store,
    tmp_path: Path,
    micromamba,
    how: str,
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
    build(how, run_cema, folder, micromamba, tmp_path)
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


@pytest.mark.shared
@pytest.mark.parametrize("how", ["engine", "script"])
def test_conda_forge_xz(
    conda_forge_channel: Path,
    make_project,
    run_cema,
    store: cema.Store,
    tmp_path: Path,
    micromamba,
    how: str,
) -> None:
    from cema.model.spec import current_platform

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
    build(how, run_cema, folder, micromamba, tmp_path)
    prefix = cema.Project.load(folder, store=store).prefix("xz")
    assert receipt_of(prefix).engine == "micromamba"
    version = subprocess.run(
        [str(prefix / "bin" / "xz"), "--version"], capture_output=True, text=True, check=True
    )
    assert "5.2.6" in version.stdout
    packed = subprocess.run(
        [str(prefix / "bin" / "xz"), "-c"], input=b"cema", capture_output=True, check=True
    ).stdout
    assert (
        subprocess.run(
            [str(prefix / "bin" / "xz"), "-dc"], input=packed, capture_output=True, check=True
        ).stdout
        == b"cema"
    )
    # the binary's own prefix (its locale folder) is the final path, whichever way it was built
    assert "bin/xz" in files_naming(prefix, str(prefix))
    staging = store.root / "staging"
    assert [f for f in files_naming(prefix, str(staging)) if f not in BOOKKEEPING] == []
    assert [a["action"] for a in plan_json(run_cema, folder)] == ["reuse"]
