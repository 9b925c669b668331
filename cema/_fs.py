"""Files that are never half written (atomic replace, fsync) and cross-process file locks."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from cema.errors import EnvBusyError

#: how long a file lock is waited for by default (a build can hold a prefix lock this long)
LOCK_TIMEOUT_S = 1800.0


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; Windows has no directory handles to sync)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: str | bytes, *, durable: bool = True, encoding: str = "utf-8"
) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The data goes to a temp file in the same folder (unique across hosts: the folder may be on
    a shared filesystem), is flushed to disk, then replaces ``path``; with ``durable`` the
    folder is synced too, so the new file survives a power cut. Caches pass ``durable=False``.
    """
    raw = data.encode(encoding) if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.urandom(16).hex()}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(raw)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        _fsync_folder(path.parent)
    return path


@contextlib.contextmanager
def file_lock(
    path: Path,
    *,
    timeout_s: float = LOCK_TIMEOUT_S,
    busy: str | None = None,
    hint: str | None = None,
) -> Iterator[None]:
    """Hold the cross-process lock file ``path`` (threads of one process exclude each other too).

    Waiting longer than ``timeout_s`` raises ``EnvBusyError`` with ``busy`` as its message.
    """
    import filelock

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path), timeout=timeout_s)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise EnvBusyError(
            busy or f"another process has held the lock {path} for {timeout_s:.0f} s.",
            hint=hint or "wait for it to finish, or stop it and try again.",
        ) from None
    try:
        yield
    finally:
        lock.release()
