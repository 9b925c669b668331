"""Atomic writes, capped reads (never blocking on a FIFO or a device) and file locks."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from cema.errors import EnvBusyError, UnreadableFileError

#: how long a file lock is waited for by default (a build can hold a prefix lock this long)
LOCK_TIMEOUT_S = 1800.0


def stat_signature(path: Path) -> list[int]:
    """What any write or replacement of ``path`` changes: size, mtime, inode and ctime.

    No tool can set a ctime back, so an unchanged signature means an unchanged file.
    """
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


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


MiB = 2**20
#: the largest ``cema.yaml`` read (a project of hundreds of envs is well under 1 MiB)
SPEC_LIMIT = 4 * MiB
#: the largest ``cema.lock`` read (thousands of envs of hundreds of packages fit)
LOCK_LIMIT = 64 * MiB
_CHUNK = MiB
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_capped(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refusing anything that could block or flood.

    The file is opened without blocking (a FIFO with no writer would wait forever) and checked
    with ``fstat`` before a byte is read: a FIFO, a device (a link to ``/dev/zero``), a socket
    or a folder is refused, and so is a file of more than ``limit`` bytes, also one that grows
    while it is read. Refusals raise ``UnreadableFileError``; a missing file raises
    ``FileNotFoundError`` as usual.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "a special file")
            raise UnreadableFileError(f"this is not a regular file (it is {kind})", path)
        too_big = f"the file is larger than {limit / MiB:g} MiB, more than Cema ever writes"
        if st.st_size > limit:
            raise UnreadableFileError(too_big, path)
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(_CHUNK, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UnreadableFileError(too_big, path)
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_text_capped(path: Path, limit: int) -> str:
    """``read_capped`` decoded as UTF-8; bytes that are not raise ``UnreadableFileError``
    naming the line they are on."""
    raw = read_capped(path, limit)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start : exc.start + 1].hex()
        raise UnreadableFileError(
            f"this is not UTF-8 text (the byte 0x{bad} at offset {exc.start})", path, line=line
        ) from None


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
