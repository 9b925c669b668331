"""A store on a full disk: the error says the disk is full and where, and nothing is published."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import cema
from cema.engines import uv
from cema.errors import CommandFailedError, DiskFullError
from cema.model.lock import PipRecord
from cema.store import RECEIPT_NAME
from tests.channel_builder import build_channel, bulk_package

pytestmark = pytest.mark.hostile

#: the uv that fails in ``test_uv_disk_full_is_said_for_the_pip_layer`` says it like this
UV_ENOSPC = (
    "error: Failed to install: msgpack-1.0.8-cp311-cp311-manylinux_2_17_x86_64.whl\n"
    "  Caused by: failed to write to file `/x/msgpack/_cmsgpack.so`: No space left on device"
    " (os error 28)\n"
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``small_disk(size)``: a fresh tmpfs of ``size`` (``20m``...); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if sys.platform != "linux" or os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root on Linux")
        where = tmp_path / f"disk-{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here: {proc.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def receipts(store_root: Path) -> list[Path]:
    return sorted(store_root.glob(f"envs/*/{RECEIPT_NAME}"))


def assert_disk_full(proc: subprocess.CompletedProcess[str], store_root: Path, env: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "failed to fetch" not in proc.stderr
    lines = proc.stderr.splitlines()
    error = next(line for line in lines if line.startswith("error:"))
    assert error.startswith(f"error: the disk holding {store_root} is full")
    assert "(No space left on device)" in error
    assert env in error
    hint = next(line for line in lines if line.startswith("hint:"))
    assert "--store" in hint and "nothing was published" in hint
    assert receipts(store_root) == []


def test_a_conda_env_bigger_than_the_store_disk(
    tmp_path: Path, small_disk, make_project, run_cema, store
) -> None:
    # 8,000 files of one page each: about 32 MB on a tmpfs, the archive itself < 1 MB
    channel = build_channel(tmp_path / "channel", [bulk_package("cemabig", files=8000)])
    folder = make_project(
        f"""\
        version: 1
        channels: ["{channel}"]
        environments:
          big:
            conda: [cemabig]
        """
    )
    run_cema("lock", cwd=folder)
    full = small_disk("20m") / "store"
    proc = run_cema("--store", full, "sync", "--frozen", cwd=folder, check=False)
    assert_disk_full(proc, full, "'big'")
    assert list((full / "staging").iterdir()) == []

    run_cema("sync", "--frozen", cwd=folder)  # the same project on a bigger disk
    prefix = cema.Project.load(folder, store=store).prefix("big")
    assert (prefix / RECEIPT_NAME).is_file()
    assert (prefix / "share" / "cemabig" / "d079" / "f07999.txt").is_file()


def test_a_venv_on_a_full_store_disk(small_disk, make_project, run_cema, store) -> None:
    python = ".".join(map(str, sys.version_info[:2]))
    folder = make_project(
        f"""\
        version: 1
        environments:
          tiny:
            kind: venv
            python: "{python}"
        """
    )
    run_cema("lock", cwd=folder)
    # room for the store's own small files, not for a virtualenv
    full = small_disk("32k") / "store"
    proc = run_cema("--store", full, "sync", "--frozen", cwd=folder, check=False)
    assert_disk_full(proc, full, "a virtualenv of")

    run_cema("sync", "--frozen", cwd=folder)
    assert (cema.Project.load(folder, store=store).prefix("tiny") / RECEIPT_NAME).is_file()


def test_uv_disk_full_is_said_for_the_pip_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = cema.Store(tmp_path / "store")
    prefix = store.prefix("a" * 24)
    prefix.mkdir(parents=True)
    calls: list[list[str]] = []

    def fake_run(cmd, **kwargs):
        argv = [str(c) for c in cmd]
        calls.append(argv)
        if argv[1:3] == ["cache", "dir"]:  # uv's cache, on the same disk here
            return subprocess.CompletedProcess(argv, 0, stdout=f"{tmp_path}\n", stderr="")
        raise CommandFailedError(
            f"{kwargs['what']} failed (exit code 2):", returncode=2, output_tail=UV_ENOSPC
        )

    monkeypatch.setattr(uv._proc, "run", fake_run)
    record = PipRecord(name="msgpack", version="1.0.8", url="https://x/m.whl", sha256="0" * 64)
    with pytest.raises(DiskFullError) as caught:
        uv.install_pip(prefix, [record], env={"CEMA_ENV": "mixed", "PATH": ""})
    message = str(caught.value)
    assert message == (
        f"the disk holding {store.root} is full (No space left on device) while installing"
        " the pip layer of environment 'mixed'."
    )
    assert "--store" in (caught.value.hint or "")
    assert calls[0][1:3] == ["pip", "install"]


def test_other_uv_failures_are_left_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_run(cmd, **kwargs):
        raise CommandFailedError("uv failed:", returncode=2, output_tail="error: hash mismatch")

    monkeypatch.setattr(uv._proc, "run", fake_run)
    record = PipRecord(name="msgpack", version="1.0.8", url="https://x/m.whl", sha256="0" * 64)
    with pytest.raises(CommandFailedError) as caught:
        uv.install_pip(tmp_path, [record], env={})
    assert not isinstance(caught.value, DiskFullError)
    assert "hash mismatch" in str(caught.value)
