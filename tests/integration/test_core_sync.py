"""Lock, plan and sync on the hand-made local channel: real rattler, real subprocesses."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cema
from cema.store import RECEIPT_NAME
from tests.channel_builder import PLACEHOLDER, host_interpreter

PY_MM = f"{sys.version_info[0]}.{sys.version_info[1]}"


def demo_yaml(channel: Path, *, demo: str = "1.0", extra: str = "") -> str:
    return f"""\
        version: 1
        channels: ["{channel}"]
        environments:
          demo:
            conda: [python, "cemademo={demo}", cemahello]
            variables: {{CEMA_TEST_GREETING: bonjour}}
        {extra}"""


def synced_prefix(folder: Path, store: cema.Store, env: str = "demo") -> Path:
    return cema.Project.load(folder, store=store).prefix(env)


def tree_snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry under ``root``: (content or link hash, mode, mtime): to prove nothing changed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            if path.is_symlink():
                digest = "link:" + os.readlink(path)
            elif path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                digest = "dir"
            out[str(path.relative_to(root))] = (digest, st.st_mode, st.st_mtime_ns)
    return out


def prefix_python(prefix: Path, code: str) -> str:
    out = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")},
    )
    return out.stdout.strip()


# --- the local channel itself ---------------------------------------------------------------------


def test_local_python_package_makes_a_venv_of_the_host_interpreter(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(
        f"""\
        version: 1
        channels: ["{local_channel}"]
        environments:
          py:
            conda: [python]
        """
    )
    run_cema("sync", cwd=folder)
    prefix = synced_prefix(folder, store, "py")
    info = json.loads(
        prefix_python(
            prefix,
            "import json, site, sys; print(json.dumps([sys.prefix, sys.base_prefix,"
            " sys.executable, site.getsitepackages(), list(sys.version_info[:3])]))",
        )
    )
    sys_prefix, base_prefix, executable, site_packages, version = info
    assert Path(sys_prefix) == prefix
    assert Path(executable) == prefix / "bin" / "python"
    assert Path(base_prefix) == host_interpreter().parent.parent
    assert str(prefix / "lib" / f"python{PY_MM}" / "site-packages") in site_packages
    assert version == list(sys.version_info[:3])


def _hand_made_wheel(folder: Path) -> Path:
    """A tiny pure-Python wheel written by hand (no network, no build backend)."""
    wheel = folder / "cemawheel-0.1-py3-none-any.whl"
    files = {
        "cemawheel.py": b"VALUE = 42\n",
        "cemawheel-0.1.dist-info/METADATA": (
            b"Metadata-Version: 2.1\nName: cemawheel\nVersion: 0.1\n"
        ),
        "cemawheel-0.1.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: cema-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(
        "{},sha256={},{}\n".format(
            name,
            base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode(),
            len(data),
        )
        for name, data in files.items()
    )
    files["cemawheel-0.1.dist-info/RECORD"] = (
        record + "cemawheel-0.1.dist-info/RECORD,,\n"
    ).encode()
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel


def test_uv_installs_into_the_prefix_never_into_the_host(
    local_channel: Path, tmp_path: Path, host_site_packages
) -> None:
    """The pip layer's premise: ``uv pip install --python <prefix>/bin/python`` stays inside."""
    from cema.engines.uv import uv_bin

    spec = cema.load_project
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "cema.yaml").write_text(
        f'version: 1\nchannels: ["{local_channel}"]\nenvironments:\n  py:\n    conda: [python]\n'
    )
    # a throwaway store: this test writes into a published prefix, which Cema never does
    project = cema.Project(spec(folder), store=cema.Store(tmp_path / "scratch-store"))
    prefix = project.sync().prefixes["py"]
    before = host_site_packages()
    wheel = _hand_made_wheel(tmp_path)
    subprocess.run(
        [
            str(uv_bin()),
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--python",
            str(prefix / "bin" / "python"),
            str(wheel),
        ],
        check=True,
        env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")},
    )
    assert (prefix / "lib" / f"python{PY_MM}" / "site-packages" / "cemawheel.py").is_file()
    assert prefix_python(prefix, "import cemawheel; print(cemawheel.__file__)").startswith(
        str(prefix)
    )
    assert host_site_packages() == before
    # the test runner's venv did not get it either
    with pytest.raises(ImportError):
        __import__("cemawheel")


# --- the main flow ------------------------------------------------------------------------------


def test_lock_sync_run_then_update_publishes_a_new_prefix(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(demo_yaml(local_channel))
    lock_out = run_cema("lock", cwd=folder)
    assert "locked 1 environment" in lock_out.stdout
    lock_text = (folder / "cema.lock").read_text()
    # the local channel is written relative to the lock's folder
    assert str(local_channel) not in lock_text
    assert os.path.relpath(local_channel, folder) in lock_text

    sync = run_cema("sync", cwd=folder)
    assert sync.stdout.startswith("create  demo (conda) -> ")
    old = synced_prefix(folder, store)
    assert (old / RECEIPT_NAME).is_file()
    assert old.parent == store.envs_dir

    # the placeholder became the final prefix (never the staging folder)
    hello = run_cema("run", "demo", "--", "cemahello", cwd=folder)
    assert hello.stdout.strip() == f"cemahello 1.0 installed in {old}"
    assert PLACEHOLDER not in (old / "bin" / "cemahello").read_text()
    assert "staging" not in (old / "bin" / "cemahello").read_text()
    assert prefix_python(old, "import cemademo; print(cemademo.__version__)") == "1.0"
    assert prefix_python(old, "import cemademo; print(cemademo.hello('cema'))") == (
        "hello cema from cemademo 1.0"
    )

    # `cema run` activates: PATH, CONDA_PREFIX, the spec's variables
    shown = run_cema(
        "run",
        "demo",
        "--",
        "sh",
        "-c",
        'echo "$CONDA_PREFIX|$CEMA_TEST_GREETING|$(command -v python)|$CEMA_ENV"',
        cwd=folder,
    )
    assert shown.stdout.strip() == f"{old}|bonjour|{old / 'bin' / 'python'}|demo"

    # a second sync changes nothing
    again = run_cema("sync", cwd=folder)
    assert again.stdout.strip() == "1 environment(s) up to date."
    assert run_cema("lock", "--check", cwd=folder).returncode == 0

    # move cemademo to 2.0: re-lock, the plan shows the diff, the sync makes a new prefix
    before = tree_snapshot(old)
    make_project(demo_yaml(local_channel, demo="2.0"))
    stale = run_cema("sync", "--locked", cwd=folder, check=False)
    assert stale.returncode == 1
    assert "error:" in stale.stderr and "out of date" in stale.stderr
    run_cema("lock", cwd=folder)
    plan = json.loads(run_cema("plan", "--json", cwd=folder).stdout)["actions"]
    assert len(plan) == 1
    (update,) = plan
    assert update["action"] == "update"
    assert update["env"] == "demo"
    assert update["from"] == old.name
    assert update["build"] is True
    assert update["changed"] == [["cemademo", "1.0", "2.0"]]
    assert update["added"] == [] and update["removed"] == []
    human = run_cema("plan", cwd=folder).stdout
    assert "~ cemademo 1.0 -> 2.0" in human

    run_cema("sync", "--locked", cwd=folder)
    new = synced_prefix(folder, store)
    assert new != old and new.name == update["address"]
    assert prefix_python(new, "import cemademo; print(cemademo.__version__)") == "2.0"
    # the published prefix is never changed in place
    assert tree_snapshot(old) == before
    assert prefix_python(old, "import cemademo; print(cemademo.__version__)") == "1.0"
    listing = run_cema("list", cwd=folder).stdout
    assert str(new) in listing and "demo" in listing


def test_identical_content_in_another_project_reuses_the_prefix(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    first = make_project(demo_yaml(local_channel), folder=Path("first"))
    second = make_project(demo_yaml(local_channel), folder=Path("second"))
    run_cema("sync", cwd=first)
    prefix = synced_prefix(first, store)
    run_cema("lock", cwd=second)
    plan = json.loads(run_cema("plan", "--json", cwd=second).stdout)["actions"]
    assert plan == [
        {
            "action": "reuse",
            "env": "demo",
            "address": prefix.name,
            "kind": "conda",
            "prefix": str(prefix),
        }
    ]
    created = (prefix / RECEIPT_NAME).stat().st_mtime_ns
    out = run_cema("-v", "sync", cwd=second)
    assert "building" not in out.stderr
    assert synced_prefix(second, store) == prefix
    assert (prefix / RECEIPT_NAME).stat().st_mtime_ns == created
    assert len(store.inventory()) == 1


def test_frozen_sync_installs_the_lock_as_it_is(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("lock", cwd=folder)
    # the spec moves on, the lock does not: --frozen installs the lock (1.0) without solving
    make_project(demo_yaml(local_channel, demo="2.0"))
    run_cema("sync", "--frozen", cwd=folder)
    prefix = synced_prefix(folder, store)
    assert prefix_python(prefix, "import cemademo; print(cemademo.__version__)") == "1.0"
    assert "cemademo=1.0" not in (folder / "cema.lock").read_text()


def test_prune_and_gc_remove_only_what_nothing_references(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    extra = """\
  other:
            conda: [python]
        """
    folder = make_project(demo_yaml(local_channel, extra=extra))
    keeper = make_project(demo_yaml(local_channel), folder=Path("keeper"))
    run_cema("sync", cwd=folder)
    run_cema("sync", cwd=keeper)  # shares demo 1.0 with the first project
    demo1 = synced_prefix(folder, store)
    other = synced_prefix(folder, store, "other")
    assert synced_prefix(keeper, store) == demo1

    # drop `other` and move demo to 2.0: with --prune, `other` goes, demo 1.0 stays (keeper)
    make_project(demo_yaml(local_channel, demo="2.0"))
    run_cema("lock", cwd=folder)
    plan = json.loads(run_cema("plan", "--prune", "--json", cwd=folder).stdout)["actions"]
    removes = [a for a in plan if a["action"] == "remove"]
    assert removes == [
        {"action": "remove", "address": other.name, "env": "other", "prefix": str(other)}
    ]
    run_cema("sync", "--prune", cwd=folder)
    assert not other.exists()
    assert (demo1 / RECEIPT_NAME).is_file()
    demo2 = synced_prefix(folder, store)

    # the keeper moves on too: now demo 1.0 is referenced by nobody
    make_project(demo_yaml(local_channel, demo="2.0"), folder=Path("keeper"))
    run_cema("sync", cwd=keeper)
    assert synced_prefix(keeper, store) == demo2
    dry = run_cema("gc", "--dry-run", cwd=folder)
    assert f"would remove {demo1}" in dry.stdout
    assert "1 unused prefix(es) found." in dry.stdout
    assert (demo1 / RECEIPT_NAME).is_file()
    gc = run_cema("gc", cwd=folder)
    assert f"removing {demo1}" in gc.stdout
    assert not demo1.exists()
    assert (demo2 / RECEIPT_NAME).is_file()
    assert run_cema("gc", "--dry-run", cwd=folder).stdout.strip() == "0 unused prefix(es) found."
    assert run_cema("run", "demo", "--", "cemahello", cwd=keeper).stdout.strip() == (
        f"cemahello 1.0 installed in {demo2}"
    )


def test_activation_scripts_run_once_at_build_and_apply_in_cema_run(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(
        f"""\
        version: 1
        channels: ["{local_channel}"]
        environments:
          gated:
            conda: [cemagate]
        """
    )
    run_cema("sync", cwd=folder)
    out = run_cema("run", "gated", "--", "sh", "-c", 'echo "$CEMAGATE_ACTIVE"', cwd=folder)
    assert out.stdout.strip() == "1"


def test_library_sync_matches_the_cli(local_channel: Path, tmp_path: Path) -> None:
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "cema.yaml").write_text(
        f'version: 1\nchannels: ["{local_channel}"]\n'
        "environments:\n  demo:\n    conda: [python, cemademo=2.0]\n"
    )
    store = cema.Store(tmp_path / "store")
    project = cema.Project.load(folder, store=store)
    result = project.sync()
    prefix = result.prefixes["demo"]
    assert [type(a).__name__ for a in result.plan.actions] == ["Create"]
    assert prefix_python(prefix, "import cemademo; print(cemademo.__version__)") == "2.0"
    again = cema.Project.load(folder, store=store).sync()
    assert again.plan.is_noop
    assert (folder / "cema.lock").is_file()


def test_channel_builder_archives_are_byte_identical(local_channel: Path, tmp_path: Path) -> None:
    from tests.channel_builder import build_local_channel

    again = build_local_channel(tmp_path / "again")
    archives = sorted(p.relative_to(local_channel) for p in local_channel.glob("*/*.tar.bz2"))
    assert len(archives) == 5
    for rel in archives:
        assert (again / rel).read_bytes() == (local_channel / rel).read_bytes(), rel


def test_a_no_op_sync_writes_nothing(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("sync", cwd=folder)
    before = {**tree_snapshot(store.root), **tree_snapshot(folder)}
    # the default (checks freshness), --locked and --frozen are all read-only when nothing changed
    for mode in ([], ["--locked"], ["--frozen"]):
        out = run_cema("-v", "sync", *mode, cwd=folder)
        assert "building" not in out.stderr
    assert {**tree_snapshot(store.root), **tree_snapshot(folder)} == before
    # and the fast path still notices a receipt that is no longer sound
    receipt = synced_prefix(folder, store) / RECEIPT_NAME
    edited = receipt.read_text().replace('"1.0"', '"9.9"', 1)
    assert edited != receipt.read_text()
    receipt.write_text(edited)
    out = run_cema("-v", "sync", cwd=folder)
    assert "building" in out.stderr
