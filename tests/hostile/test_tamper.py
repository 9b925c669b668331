"""A synced prefix tampered with after the fact: ``cema verify`` sees it, edited receipts count
for nothing (real conda-forge archives, the real ``cema`` console script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cema
from cema.model.spec import current_platform
from cema.store import RECEIPT_NAME
from cema.verify import verify_prefix
from tests.conftest import CLI_TIMEOUT_S, cema_environ

pytestmark = pytest.mark.skipif(
    current_platform() != "linux-64", reason="the conda-forge test archives are linux-64 builds"
)

#: the console script installed beside the interpreter running the tests
CEMA = Path(sys.executable).with_name("cema.exe" if sys.platform == "win32" else "cema")
DAMAGED_ONE = "error: 1 env damaged; run `cema sync` to rebuild them."


def cema_cli(store: cema.Store, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real ``cema`` command in a subprocess (never a crash, whatever it exits with)."""
    if not CEMA.is_file():
        pytest.skip(f"no `cema` console script beside {sys.executable}")
    proc = subprocess.run(
        [str(CEMA), *args],
        cwd=cwd,
        env=cema_environ(store.root),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode >= 0, f"`cema {' '.join(args)}` crashed:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def xz_project(conda_forge_channel: Path, make_project, store: cema.Store) -> Path:
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
    proc = cema_cli(store, "sync", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder


def xz_prefix(folder: Path, store: cema.Store) -> Path:
    return cema.Project.load(folder, store=store).prefix("xz")


def edit_in_place(path: Path) -> None:
    """Flip one byte of ``path`` without changing its size (nor replacing the file)."""
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.shared
def test_a_fresh_prefix_verifies_clean_fast_and_full(xz_project: Path, store) -> None:
    prefix = xz_prefix(xz_project, store)
    assert verify_prefix(prefix) == []
    assert verify_prefix(prefix, full=True) == []
    for args in (("verify",), ("verify", "--full"), ("verify", "-e", "xz")):
        proc = cema_cli(store, *args, cwd=xz_project)
        assert (proc.returncode, proc.stdout) == (0, "xz: ok\n"), proc.stderr


@pytest.mark.shared
def test_a_deleted_file_is_reported_missing(xz_project: Path, store) -> None:
    (xz_prefix(xz_project, store) / "bin" / "xz").unlink()
    proc = cema_cli(store, "verify", cwd=xz_project)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[1:] == ["  missing bin/xz (xz)"]
    assert proc.stdout.startswith("xz: damaged (1 problem in ")
    assert proc.stderr.strip() == DAMAGED_ONE


@pytest.mark.shared
@pytest.mark.parametrize(
    "rel",
    [
        "include/lzma.h",  # copied from the archive as it is (its sha256 is the archive's)
        "bin/xz",  # a binary prefix placeholder rewritten at link time (sha256_in_prefix)
    ],
)
def test_an_edit_keeping_the_size_passes_fast_and_fails_full(
    xz_project: Path, store, rel: str
) -> None:
    edit_in_place(xz_prefix(xz_project, store) / rel)
    fast = cema_cli(store, "verify", cwd=xz_project)
    assert (fast.returncode, fast.stdout) == (0, "xz: ok\n"), fast.stderr
    full = cema_cli(store, "verify", "--full", cwd=xz_project)
    assert full.returncode == 1
    assert full.stdout.splitlines()[1:] == [
        f"  hash {rel} (xz): the content differs from its record"
    ]
    assert full.stderr.strip() == DAMAGED_ONE


@pytest.mark.shared
def test_a_truncated_file_fails_the_fast_check(xz_project: Path, store) -> None:
    path = xz_prefix(xz_project, store) / "lib" / "liblzma.so.5.2.6"
    size = path.stat().st_size
    os.truncate(path, 100)
    proc = cema_cli(store, "verify", cwd=xz_project)
    assert proc.returncode == 1
    expected = f"  size lib/liblzma.so.5.2.6 (xz): 100 bytes, recorded {size}"
    assert proc.stdout.splitlines()[1:] == [expected]
    assert proc.stderr.strip() == DAMAGED_ONE


@pytest.mark.shared
def test_a_receipt_edited_by_hand_is_refused(xz_project: Path, store) -> None:
    """The user sees the env as not synced (list), damaged (verify), and sync rebuilds it."""
    prefix = xz_prefix(xz_project, store)
    before = cema_cli(store, "list", cwd=xz_project).stdout
    assert "packages" in before and str(prefix) in before
    receipt = prefix / RECEIPT_NAME
    text = receipt.read_text("utf-8")
    assert '"5.2.6"' in text
    receipt.write_text(text.replace('"5.2.6"', '"5.4.0"'), "utf-8")

    listed = cema_cli(store, "list", cwd=xz_project)
    assert listed.returncode == 0
    (line,) = listed.stdout.splitlines()
    assert line.split() == ["xz", "conda", "not", "synced"]
    proc = cema_cli(store, "verify", cwd=xz_project)
    assert proc.returncode == 1
    assert proc.stdout == (
        f"xz: damaged (its receipt {receipt} is refused: "
        "the receipt does not match its digest: it was edited or damaged)\n"
    )
    assert proc.stderr.strip() == DAMAGED_ONE

    # the way back: sync builds the prefix again, with a true receipt
    assert cema_cli(store, "sync", cwd=xz_project).returncode == 0
    assert ["xz", "5.2.6"] in json.loads(receipt.read_text("utf-8"))["conda"]
    assert cema_cli(store, "verify", cwd=xz_project).stdout == "xz: ok\n"


@pytest.mark.shared
def test_an_env_never_synced_is_not_installed(conda_forge_channel: Path, make_project, store):
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
    proc = cema_cli(store, "verify", cwd=folder)
    assert (proc.returncode, proc.stdout) == (1, "xz: not installed (never synced)\n")
    assert proc.stderr.strip() == "error: 1 env not installed; run `cema sync` to rebuild them."


@pytest.mark.network
def test_a_file_deleted_from_the_pip_layer_is_reported(
    local_channel: Path, make_project, store
) -> None:
    folder = make_project(
        f"""\
        version: 1
        channels: ["{local_channel}"]
        environments:
          mixed:
            conda: [python]
            pip: ["six==1.16.0"]
        """
    )
    assert cema_cli(store, "sync", cwd=folder).returncode == 0
    prefix = cema.Project.load(folder, store=store).prefix("mixed")
    assert verify_prefix(prefix, full=True) == []
    (six,) = prefix.glob("lib/python*/site-packages/six.py")
    six.unlink()
    proc = cema_cli(store, "verify", cwd=folder)
    assert proc.returncode == 1
    rel = six.relative_to(prefix).as_posix()
    assert proc.stdout.splitlines()[1:] == [f"  missing {rel} (six)"]
    assert proc.stderr.strip() == DAMAGED_ONE


@pytest.mark.shared
def test_sync_verify_rebuilds_a_damaged_prefix_from_fresh_packages(xz_project: Path, store) -> None:
    prefix = xz_prefix(xz_project, store)
    library = next((prefix / "lib").glob("liblzma.so.5.*"))
    size = library.stat().st_size
    (prefix / "bin" / "xz").unlink()
    with library.open("r+b") as f:  # in place: its hard-linked copy in the package cache too
        f.truncate(100)
    plain = cema_cli(store, "-v", "sync", cwd=xz_project)
    assert "building" not in plain.stderr  # a plain sync trusts receipts: one stat per prefix
    repaired = cema_cli(store, "-v", "sync", "--verify", cwd=xz_project)
    assert repaired.returncode == 0, repaired.stderr
    assert "is damaged" in repaired.stderr and "building" in repaired.stderr
    assert xz_prefix(xz_project, store) == prefix  # same content, same address
    assert (prefix / "bin" / "xz").is_file()
    assert library.stat().st_size == size  # re-extracted, not linked from the damaged cache
    assert verify_prefix(prefix, full=True) == []
    again = cema_cli(store, "-v", "sync", "--verify", cwd=xz_project)
    assert "building" not in again.stderr and "damaged" not in again.stderr


@pytest.mark.shared
def test_a_damaged_package_cache_entry_is_extracted_again_before_linking(
    xz_project: Path, conda_forge_channel: Path, make_project, store
) -> None:
    library = next((xz_prefix(xz_project, store) / "lib").glob("liblzma.so.5.*"))
    size = library.stat().st_size
    with library.open("r+b") as f:  # in place: the package cache shares this file
        f.truncate(100)
    other = make_project(
        f"""\
        version: 1
        channels: ["{conda_forge_channel}"]
        platforms: [linux-64]
        environments:
          both:
            conda: [xz, bzip2]
        """,
        folder=Path("other"),
    )
    proc = cema_cli(store, "sync", cwd=other)
    assert proc.returncode == 0, proc.stderr
    assert "is damaged" in proc.stderr and "extracting it again" in proc.stderr
    prefix = cema.Project.load(other, store=store).prefix("both")
    assert (prefix / "lib" / library.name).stat().st_size == size
    assert verify_prefix(prefix, full=True) == []
