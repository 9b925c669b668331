"""Shared-memory segments that carry large out-of-band pickle buffers between host and worker."""

# Mirrors the segment code of cema/_internal/executor_server.py (which cannot import us).
#
# Linux (/dev/shm): pooled. The sender copies a large buffer into a segment of its Outbox and
# names it in the frame; the receiver maps it and hands the mapping to the unpickled object
# (zero copy). When the last view of that mapping is gone, the receiver's Inbox notes the name
# and the next frame it sends tells the sender, which reuses the segment: its pages stay
# allocated, so a repeated transfer costs one memcpy instead of a fresh page allocation (which is
# what dominates the cost of a new segment). Segments are unlinked when the owner's session
# ends; after a peer's death the survivor unlinks what the peer created (it saw every name).
#
# Elsewhere: one multiprocessing.shared_memory segment per buffer; the receiver copies it out and
# unlinks it at once; a segment that no one received is unlinked by its sender.

from __future__ import annotations

import collections
import contextlib
import mmap
import os
import pickle
import secrets
import sys
import threading
import weakref
from collections.abc import Iterable
from multiprocessing import shared_memory

#: out-of-band buffers at least this big go through shared memory; smaller ones stay in band
SHM_THRESHOLD_BYTES = 1 << 20
#: segment names start with this, so a leak is easy to spot in /dev/shm
SHM_PREFIX = "cema_"
#: pooled segments are sized in steps of this
SEGMENT_STEP_BYTES = 1 << 20
#: released segments kept for reuse, per side; beyond this the oldest are unlinked...
POOL_KEEP_BYTES = 1 << 30
#: ...except the most recent ones: transfers of one big size alternate between two segments
POOL_KEEP_ALWAYS = 2

_DEV_SHM = "/dev/shm"  # noqa: S108 - where Linux keeps POSIX shared memory
POOLED = sys.platform.startswith("linux") and os.path.isdir(_DEV_SHM)  # noqa: PTH112
_TRACKED = sys.version_info < (3, 13) and os.name == "posix"

#: one table entry: (segment name, bytes used, pooled)
Entry = tuple[str, int, bool]


def _path(name: str) -> str:
    return os.path.join(_DEV_SHM, name)  # noqa: PTH118 - a plain string for os.open


class Outbox:
    """Segments this side created to send buffers; reused once the peer lets go of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: dict[str, mmap.mmap] = {}  # insertion order: oldest release first
        self._busy: dict[str, mmap.mmap] = {}
        self._closed = False

    def put(self, buffer: pickle.PickleBuffer) -> Entry:
        """Copy a contiguous buffer into a segment; the peer gets the returned entry."""
        view = buffer.raw()
        if not POOLED:
            return _create_unpooled(view), view.nbytes, False
        nbytes = view.nbytes
        with self._lock:
            name = self._take_free(nbytes)
            segment = self._free.pop(name) if name else None
        if segment is None or name is None:
            name, segment = _create_pooled(nbytes)
        segment[:nbytes] = view  # the one copy
        with self._lock:
            if self._closed:
                segment.close()
                _unlink(name)
                raise OSError("the session is closed")
            self._busy[name] = segment
        return name, nbytes, True

    def _take_free(self, nbytes: int) -> str | None:
        fits = [(len(m), n) for n, m in self._free.items() if nbytes <= len(m) <= 2 * nbytes
                + SEGMENT_STEP_BYTES]
        return min(fits)[1] if fits else None

    def release(self, names: Iterable[str]) -> None:
        """The peer let go of these segments: keep them for reuse, within POOL_KEEP_BYTES."""
        with self._lock:
            for name in names:
                segment = self._busy.pop(name, None)
                if segment is not None:
                    self._free[name] = segment
            kept = sum(len(m) for m in self._free.values())
            while kept > POOL_KEEP_BYTES and len(self._free) > POOL_KEEP_ALWAYS:
                name = next(iter(self._free))
                segment = self._free.pop(name)
                kept -= len(segment)
                segment.close()
                _unlink(name)

    def abandon(self, entries: Iterable[Entry]) -> None:
        """A frame that will never be received: its segments are free again (or gone)."""
        for name, _, pooled in entries:
            if not pooled:
                unlink_segment(name)
        self.release(name for name, _, pooled in entries if pooled)

    def close(self) -> None:
        """Unlink every segment; views the peer still holds stay valid until dropped."""
        with self._lock:
            self._closed = True
            segments = {**self._free, **self._busy}
            self._free.clear()
            self._busy.clear()
        for name, segment in segments.items():
            segment.close()
            _unlink(name)


class Inbox:
    """Segments received from the peer, and the names to report back once they are let go."""

    def __init__(self) -> None:
        self.released: collections.deque[str] = collections.deque()
        self._seen: set[str] = set()

    def map(self, entry: Entry) -> memoryview:
        """A view of a received segment (pooled: mapped, zero copy; else copied and unlinked)."""
        name, nbytes, pooled = entry
        if not pooled:
            return _receive_unpooled(name, nbytes)
        self._seen.add(name)
        fd = os.open(_path(name), os.O_RDWR)
        try:
            segment = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        # the mapping dies with the last view the unpickled objects keep of it
        weakref.finalize(segment, self.released.append, name)
        return memoryview(segment)

    def drain(self) -> tuple[str, ...]:
        """Names let go since the last call, to piggyback on the next frame."""
        names = []
        while self.released:
            names.append(self.released.popleft())
        return tuple(names)

    def unlink_seen(self) -> None:
        """The peer died: remove what it created (our own views of it stay valid)."""
        for name in self._seen:
            _unlink(name)
        self._seen.clear()


def _create_pooled(nbytes: int) -> tuple[str, mmap.mmap]:
    size = -(-max(nbytes, 1) // SEGMENT_STEP_BYTES) * SEGMENT_STEP_BYTES
    name = SHM_PREFIX + secrets.token_hex(8)
    fd = os.open(_path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        # allocate now: a full /dev/shm then fails here (ENOSPC), not with SIGBUS on first write
        os.posix_fallocate(fd, 0, size)
        return name, mmap.mmap(fd, size)
    except BaseException:
        _unlink(name)
        raise
    finally:
        os.close(fd)


def _unlink(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_path(name))  # noqa: PTH108


# --- without /dev/shm: multiprocessing.shared_memory, one segment per buffer ------------------


def _open(name: str, *, create: bool, size: int = 0) -> shared_memory.SharedMemory:
    """Open a segment without leaving it to the resource tracker: we unlink it ourselves."""
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, create=create, size=size, track=False)
    segment = shared_memory.SharedMemory(name=name, create=create, size=size)
    if _TRACKED:
        from multiprocessing import resource_tracker

        # before 3.13 every open registers; a registered segment that the other side unlinks
        # makes the tracker warn about a leak and unlink it a second time at exit
        resource_tracker.unregister(segment._name, "shared_memory")  # type: ignore[attr-defined]
    return segment


def _buf(segment: shared_memory.SharedMemory) -> memoryview:
    buf = segment.buf
    assert buf is not None  # None only after close()
    return buf


def _unlink_open(segment: shared_memory.SharedMemory) -> None:
    if _TRACKED:
        from multiprocessing import resource_tracker

        # unlink() unregisters before 3.13: register again so the tracker's books balance
        resource_tracker.register(segment._name, "shared_memory")  # type: ignore[attr-defined]
    segment.unlink()


def _create_unpooled(view: memoryview) -> str:
    name = SHM_PREFIX + secrets.token_hex(8)
    segment = _open(name, create=True, size=max(view.nbytes, 1))
    try:
        _buf(segment)[: view.nbytes] = view
    except BaseException:
        segment.close()
        unlink_segment(name)
        raise
    segment.close()
    return name


def _receive_unpooled(name: str, nbytes: int) -> memoryview:
    # a SharedMemory object cannot be closed while views exist: copy out instead
    segment = _open(name, create=False)
    try:
        return memoryview(bytearray(_buf(segment)[:nbytes]))
    finally:
        segment.close()
        _unlink_open(segment)


def unlink_segment(name: str) -> None:
    """Remove a segment; one that is already gone is fine."""
    if POOLED:
        _unlink(name)
        return
    try:
        segment = _open(name, create=False)
    except OSError:
        return
    segment.close()
    _unlink_open(segment)
