"""Hostile project files through the real ``cema`` console script: never a hang, never a
traceback, always one ``error:`` naming the file (issue #18: alias bombs, FIFOs, /dev/zero,
wrong-typed or undecodable locks, numbers too long to read)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cema
from cema.store import RECEIPT_NAME
from tests.conftest import cema_environ

pytestmark = pytest.mark.hostile

#: the console script installed beside the interpreter running the tests
CEMA = Path(sys.executable).with_name("cema.exe" if sys.platform == "win32" else "cema")
#: a refusal is quick: anything slower than this is a hang
HANG_S = 60.0
COMMANDS = [("lock",), ("sync", "--frozen"), ("plan",)]
LOCK_READERS = [("sync", "--frozen"), ("plan",)]


def cema_cli(store: cema.Store, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real ``cema`` command, with a deadline (a hang fails the test instead of blocking)."""
    if not CEMA.is_file():
        pytest.skip(f"no `cema` console script beside {sys.executable}")
    try:
        return subprocess.run(
            [str(CEMA), *args],
            cwd=cwd,
            env=cema_environ(store.root),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=HANG_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`cema {' '.join(args)}` hung for {HANG_S:.0f} s", pytrace=False)


def assert_refused(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 1, ``error:`` first, no traceback, each fragment in stderr."""
    detail = f"\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    assert proc.returncode == 1, detail
    assert proc.stderr.startswith("error: "), detail
    assert "Traceback" not in proc.stderr, detail
    for fragment in fragments:
        assert fragment in proc.stderr, f"{fragment!r} not in stderr{detail}"


def good_yaml(channel: Path) -> str:
    return f"""\
        version: 1
        channels: ["{channel}"]
        environments:
          demo:
            conda: [python, cemademo, cemahello]
        """


@pytest.fixture
def locked(local_channel: Path, make_project, store: cema.Store) -> Path:
    """A project with a good ``cema.lock`` (written by the real CLI)."""
    folder = make_project(good_yaml(local_channel))
    proc = cema_cli(store, "lock", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder


def laughs(levels: int = 9) -> str:
    """YAML whose aliases expand to 10**levels strings (a few hundred bytes of text)."""
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


# --- hangs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_an_alias_bomb_in_the_spec_is_refused_quickly(
    command: tuple[str, ...], local_channel: Path, make_project, store
) -> None:
    folder = make_project(good_yaml(local_channel))
    spec = folder / "cema.yaml"
    spec.write_text(spec.read_text() + laughs())
    proc = cema_cli(store, *command, cwd=folder)
    assert_refused(proc, str(spec), "alias")
    assert not (folder / "cema.lock").exists()


@pytest.mark.parametrize("command", LOCK_READERS)
def test_an_alias_bomb_in_the_lock_is_refused_quickly(
    command: tuple[str, ...], locked: Path, store
) -> None:
    lock = locked / "cema.lock"
    text = lock.read_text()
    bombed = text.replace("version: 1\n", "version: 1\n" + laughs(), 1)
    lock.write_text(bombed)
    proc = cema_cli(store, *command, cwd=locked)
    assert_refused(proc, str(lock), "alias")
    assert lock.read_text() == bombed


def test_lock_replaces_a_lock_that_is_an_alias_bomb(locked: Path, store) -> None:
    lock = locked / "cema.lock"
    good = lock.read_text()
    lock.write_text(good.replace("version: 1\n", "version: 1\n" + laughs(), 1))
    proc = cema_cli(store, "lock", cwd=locked)
    assert proc.returncode == 0, proc.stderr
    assert lock.read_text() == good


def _fifo(path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero on this platform")
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")


SHAPES = {"fifo": _fifo, "dev-zero": _dev_zero}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("command", LOCK_READERS)
def test_a_lock_that_is_not_a_regular_file_is_refused(
    shape: str, command: tuple[str, ...], locked: Path, store
) -> None:
    lock = locked / "cema.lock"
    SHAPES[shape](lock)
    proc = cema_cli(store, *command, cwd=locked)
    # (the project names its lock by its real path: a link's target, /dev/zero)
    assert_refused(proc, "lock file", "not a regular file")
    assert str(lock) in proc.stderr or "/dev/zero" in proc.stderr


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("command", COMMANDS)
def test_a_spec_that_is_not_a_regular_file_is_refused(
    shape: str, command: tuple[str, ...], locked: Path, store
) -> None:
    spec = locked / "cema.yaml"
    SHAPES[shape](spec)
    proc = cema_cli(store, *command, "--project", str(spec), cwd=locked)
    assert_refused(proc)
    # a FIFO is refused when read; a link to a device is not even taken for a cema.yaml
    assert "not a regular file (it is a FIFO)" in proc.stderr or "no cema.yaml" in proc.stderr


def test_a_huge_lock_is_refused_without_reading_it_all(locked: Path, store) -> None:
    lock = locked / "cema.lock"
    with lock.open("ab") as fh:
        fh.truncate(lock.stat().st_size + 65 * 2**20)  # sparse: 65 MiB of zeros, no disk used
    proc = cema_cli(store, "sync", "--frozen", cwd=locked)
    assert_refused(proc, str(lock), "MiB")


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_receipts_and_registrations_that_are_not_files_do_not_block(
    shape: str, locked: Path, store: cema.Store
) -> None:
    # a prefix whose receipt is a FIFO is not ready (never a hang); a registration is skipped
    project = cema.Project.load(locked, store=store)
    (action,) = project.plan().actions
    prefix = store.prefix(action.address)
    prefix.mkdir(parents=True)
    SHAPES[shape](prefix / RECEIPT_NAME)
    (store.root / "projects").mkdir(parents=True)
    SHAPES[shape](store.root / "projects" / "0000000000000000.json")
    plan = cema_cli(store, "plan", cwd=locked)
    assert plan.returncode == 0, plan.stderr
    assert "create" in plan.stdout.lower(), plan.stdout
    gc = cema_cli(store, "gc", "--dry-run", cwd=locked)
    assert gc.returncode == 0, gc.stderr
    assert "Traceback" not in plan.stderr + gc.stderr


# --- tracebacks instead of error: ----------------------------------------------------------------


def _edit_first_record(lock: Path, key: str, value: str) -> int:
    """Set ``key: value`` in the first conda record of ``lock`` (a text edit, as by hand).

    The key's old value goes, block list items included; returns the edited line's number.
    """
    lines = lock.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.strip() == "conda:")
    for i in range(start, len(lines)):
        line = lines[i]
        if line.lstrip().lstrip("- ").startswith(f"{key}:"):
            head = line[: line.index(f"{key}:")]
            indent = " " * len(head)
            end = i + 1
            while end < len(lines) and lines[end].startswith(f"{indent}- "):
                end += 1
            lines[i:end] = [f"{head}{key}: {value}\n"]
            lock.write_text("".join(lines))
            return i + 1
    raise AssertionError(f"no {key!r} in {lock}")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("timestamp", "s"),
        ("build_number", "x"),
        ("size", "[]"),
        ("depends", "[[python]]"),
        ("version", "1" * 5000),
        ("version", '"' + "1" * 5000 + '"'),
    ],
    ids=["timestamp-str", "build-number-str", "size-list", "nested-list", "huge-int", "huge-str"],
)
@pytest.mark.parametrize("command", LOCK_READERS)
def test_a_wrong_typed_lock_field_is_an_error_naming_file_key_and_line(
    key: str, value: str, command: tuple[str, ...], locked: Path, store
) -> None:
    lock = locked / "cema.lock"
    line = _edit_first_record(lock, key, value)
    before = lock.read_bytes()
    proc = cema_cli(store, *command, cwd=locked)
    if value.startswith('"'):
        # a long version string is a valid string: the content hash says the edit
        assert_refused(proc, str(lock), "edited by hand")
    else:
        assert_refused(proc, f"{lock}:{line}", key)
    assert lock.read_bytes() == before


@pytest.mark.parametrize("command", LOCK_READERS)
def test_a_lock_with_bytes_that_are_not_utf8_is_an_error(
    command: tuple[str, ...], locked: Path, store
) -> None:
    lock = locked / "cema.lock"
    lock.write_bytes(lock.read_bytes().replace(b"cemahello", b"cema\xff\xfehello", 1))
    proc = cema_cli(store, *command, cwd=locked)
    assert_refused(proc, str(lock), "UTF-8")


def test_a_spec_with_a_huge_number_is_an_error(local_channel: Path, make_project, store) -> None:
    folder = make_project(good_yaml(local_channel))
    spec = folder / "cema.yaml"
    spec.write_text(spec.read_text() + "store: " + "9" * 5000 + "\n")
    proc = cema_cli(store, "lock", cwd=folder)
    assert_refused(proc, str(spec))
    assert not (folder / "cema.lock").exists()


def test_a_deeply_nested_spec_is_an_error(local_channel: Path, make_project, store) -> None:
    folder = make_project(good_yaml(local_channel))
    spec = folder / "cema.yaml"
    spec.write_text(spec.read_text() + "deep: " + "[" * 5000 + "]" * 5000 + "\n")
    proc = cema_cli(store, "lock", cwd=folder)
    assert_refused(proc, str(spec))
    assert not (folder / "cema.lock").exists()
