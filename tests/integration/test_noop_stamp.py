"""A plain `cema sync` with nothing to do is answered from its stamp, and never wrongly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cema
from cema.store import RECEIPT_NAME
from tests.conftest import cema_environ
from tests.integration.test_core_sync import demo_yaml, synced_prefix, tree_snapshot

UP_TO_DATE = "1 environment(s) up to date."


def _models_loaded(
    folder: Path, store: cema.Store, *argv: str, env: dict[str, str] | None = None
) -> tuple[str, list[str]]:
    """Run `cema ARGV` in-process in a fresh interpreter: its output and the model modules it
    imported (the long way imports the spec, lock and plan models; the stamp none of them)."""
    code = (
        "import sys, io, contextlib\n"
        "from cema.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    code = main({list(argv)!r})\n"
        "print(out.getvalue().strip())\n"
        "print(sorted(m for m in sys.modules if m.startswith('cema.model')))\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        env=cema_environ(store.root, env),
        capture_output=True,
        text=True,
        check=True,
    )
    *printed, modules = proc.stdout.splitlines()
    return "\n".join(printed).strip(), json.loads(modules.replace("'", '"'))


def test_a_no_op_sync_is_answered_without_the_model(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("sync", cwd=folder)
    for argv in (["sync"], ["-q", "sync", "--frozen"], ["sync", "--project", str(folder)]):
        printed, models = _models_loaded(folder, store, *argv)
        assert printed == ("" if "-q" in argv else UP_TO_DATE)
        assert models == [], argv
    # what the stamp cannot vouch for goes the long way: -v, -e, --prune, another store
    for argv in (["-v", "sync"], ["sync", "-e", "demo"], ["sync", "--prune"]):
        printed, models = _models_loaded(folder, store, *argv)
        assert printed == UP_TO_DATE
        assert "cema.model.lock" in models, argv


def test_a_stamped_no_op_writes_nothing(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("sync", cwd=folder)
    before = {**tree_snapshot(store.root), **tree_snapshot(folder)}
    for mode in ([], ["--locked"], ["--frozen"]):
        assert run_cema("sync", *mode, cwd=folder).stdout.strip() == UP_TO_DATE
    assert {**tree_snapshot(store.root), **tree_snapshot(folder)} == before
    # a comment in cema.yaml changes no verdict: the stamp is renewed once, then left alone
    spec = folder / "cema.yaml"
    spec.write_text(spec.read_text() + "# a comment\n")
    assert run_cema("sync", cwd=folder).stdout.strip() == UP_TO_DATE
    before = {**tree_snapshot(store.root), **tree_snapshot(folder)}
    assert run_cema("sync", cwd=folder).stdout.strip() == UP_TO_DATE
    assert {**tree_snapshot(store.root), **tree_snapshot(folder)} == before


def test_a_stale_stamp_is_never_believed(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("sync", cwd=folder)
    prefix = synced_prefix(folder, store)

    # a receipt edited by hand: refused, the prefix built again
    receipt = prefix / RECEIPT_NAME
    receipt.write_text(receipt.read_text().replace('"1.0"', '"9.9"', 1))
    assert run_cema("sync", cwd=folder).stdout.strip() != UP_TO_DATE
    assert cema.Store(store.root).receipt(prefix.name) is not None

    # the prefix removed: built again
    shutil.rmtree(prefix)
    assert run_cema("sync", cwd=folder).stdout.strip() != UP_TO_DATE
    assert (synced_prefix(folder, store) / RECEIPT_NAME).is_file()

    # another store: built there
    other = tmp_path / "other-store"
    out = run_cema("sync", "--store", other, cwd=folder)
    assert out.stdout.strip() != UP_TO_DATE
    assert cema.Project.load(folder, store=cema.Store(other)).prefix("demo").is_dir()

    # the spec changed: re-locked and built
    (folder / "cema.yaml").write_text(
        (folder / "cema.yaml").read_text().replace("cemademo=1.0", "cemademo=2.0")
    )
    out = run_cema("sync", cwd=folder)
    assert out.stdout.strip() != UP_TO_DATE
    assert "cemademo" in out.stdout + out.stderr

    # the lock edited by hand (a byte the YAML still parses): refused as before
    lock = folder / "cema.lock"
    text = lock.read_text()
    edited = text.replace("size: ", "size: 1", 1)
    assert edited != text
    lock.write_text(edited)
    out = run_cema("sync", "--frozen", cwd=folder, check=False)
    assert out.returncode == 1
    assert out.stderr.startswith("error:")

    # an environment setting the long way judges: still judged
    lock.write_text(text)
    assert run_cema("sync", cwd=folder).stdout.strip() == UP_TO_DATE
    out = run_cema("sync", cwd=folder, env={"CEMA_LOCKED": "maybe"}, check=False)
    assert out.returncode == 1
    assert "CEMA_LOCKED='maybe' is not a yes or no" in out.stderr


def test_a_venv_s_stamp_holds_only_while_its_interpreters_do(
    make_project, run_cema, store: cema.Store, tmp_path: Path
) -> None:
    # a venv's address depends on the interpreter chosen for it: the running one, else the
    # newest of pyenv's; a new pyenv version could change that choice, so the long way decides
    pyenv = tmp_path / "pyenv"
    (pyenv / "versions").mkdir(parents=True)
    env = {"PYENV_ROOT": str(pyenv)}
    folder = make_project('version: 1\nenvironments:\n  bare: {kind: venv, python: "3"}\n')
    run_cema("sync", cwd=folder, env=env)
    printed, models = _models_loaded(folder, store, "sync", env=env)
    assert (printed, models) == (UP_TO_DATE, [])
    (pyenv / "versions" / "3.99.0").mkdir()
    printed, models = _models_loaded(folder, store, "sync", env=env)
    assert printed == UP_TO_DATE
    assert "cema.model.lock" in models


def test_a_sync_from_a_stale_lock_leaves_no_stamp(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    # `--frozen` installs a lock that no longer matches cema.yaml: `--locked` must still refuse
    folder = make_project(demo_yaml(local_channel))
    run_cema("sync", cwd=folder)
    spec = folder / "cema.yaml"
    spec.write_text(spec.read_text().replace("cemademo=1.0", "cemademo=2.0"))
    run_cema("sync", "--frozen", cwd=folder)
    out = run_cema("sync", "--locked", cwd=folder, check=False)
    assert out.returncode == 1, out.stdout
    assert out.stderr.startswith("error:")
    # an auto sync keeps the locked env no longer declared: `--locked` refuses that lock too
    run_cema("sync", cwd=folder)
    spec.write_text(spec.read_text() + "  other:\n    conda: [python]\n")
    run_cema("sync", cwd=folder)
    spec.write_text(spec.read_text().replace("  other:\n    conda: [python]\n", ""))
    run_cema("sync", cwd=folder)
    out = run_cema("sync", "--locked", cwd=folder, check=False)
    assert out.returncode == 1, out.stdout
    assert "other" in out.stderr
