"""Shared-memory segments for large buffers: the sender's Outbox, the receiver's Inbox."""

# Part of the wire protocol (protocol.py re-exports these names; read its notes first), split
# out to keep modules short: standard library only, 3.8 syntax, loaded by path in a worker.
#
# Linux (/dev/shm): an out-of-band buffer is copied into a segment of the sender's Outbox, which
# the receiver maps (zero copy). When the last view of a mapping is gone, the receiver's Inbox
# notes the name and its next frame tells the sender, which reuses the segment (pages allocated
# and mapped: one memcpy). Free segments are unlinked after POOL_IDLE_S idle and beyond
# POOL_KEEP_BYTES; new ones are pre-faulted (MAP_POPULATE). /dev/shm too small: a file in the
# spill folder (the worker's private folder), else in band, a warning each. Names carry the
# owner's pid, so a later launch unlinks what dead owners left (unlink_orphans). Owners unlink
# their segments at the end; a survivor unlinks what a dead peer made (it saw every name).
# Elsewhere: a multiprocessing.shared_memory segment per buffer.

from __future__ import annotations

import collections
import contextlib
import os
import sys
import threading

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import mmap
    import pickle
    from collections.abc import Callable, Iterable
    from multiprocessing import shared_memory

    #: one table entry: (segment name, bytes used, pooled)
    Entry = tuple[str, int, bool]

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
#: free segments are unlinked after this many idle seconds; segments the peer maps, after
#: BUSY_IDLE_FACTOR times as long (the peer's mapping stays valid; a reply waiting that long to
#: be read would not find its segment, so this is long)
POOL_IDLE_S = 5.0
BUSY_IDLE_FACTOR = 12
#: test hooks (environment variables): a /dev/shm budget in bytes, and POOL_IDLE_S
BUDGET_HOOK, IDLE_HOOK = "CEMA_TEST_SHM_BUDGET_BYTES", "CEMA_TEST_SHM_IDLE_S"
_POPULATE = 0x8000 if POOLED else 0  # mmap.MAP_POPULATE (named only from 3.10): pre-fault


def _path(name: str) -> str:
    return name if os.path.isabs(name) else os.path.join(_DEV_SHM, name)  # noqa: PTH117,PTH118


def _unlink(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_path(name))  # noqa: PTH108


def new_name() -> str:
    """A segment name: SHM_PREFIX, the owner's pid, random."""
    return f"{SHM_PREFIX}{os.getpid()}_{os.urandom(6).hex()}"


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: alive
        return True
    return True


def unlink_orphans(folder: str = _DEV_SHM, dry_run: bool = False) -> list[str]:
    """Unlink segments in ``folder`` whose owner process is gone (a killed host, say); their
    paths (``dry_run``: only listed, as ``cema gc --dry-run`` does)."""
    gone = []
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(folder)):  # noqa: PTH208 - plain names
            pid = name[len(SHM_PREFIX) :].split("_", 1)[0]
            if name.startswith(SHM_PREFIX) and pid.isdigit() and not alive(int(pid)):
                path = os.path.join(folder, name)  # noqa: PTH118
                if not dry_run:
                    _unlink(path)
                gone.append(path)
    return gone


class Outbox:
    """Segments this side made to send buffers, reused once the peer lets go of them.

    ``warn`` hears of it when /dev/shm is too small (the segment goes to a file in ``spill``)
    and when that fails too (the buffers go in band instead).
    """

    def __init__(self, warn: Callable[[str], object], spill: str | None = None) -> None:
        self.warn = warn
        self.spill = spill
        self.budget = int(os.environ.get(BUDGET_HOOK) or 0)
        self.idle_s = float(os.environ.get(IDLE_HOOK) or POOL_IDLE_S)
        self._lock = threading.Lock()
        self._free: dict[str, tuple[mmap.mmap, float]] = {}  # oldest release first
        self._busy: dict[str, tuple[mmap.mmap, float]] = {}
        self._timer: threading.Timer | None = None
        self._closed = False
        self._warned: set[str] = set()

    def put(self, buffer: pickle.PickleBuffer) -> Entry:
        """Copy a contiguous buffer into a segment; the peer gets the returned entry."""
        view = buffer.raw()
        nbytes = view.nbytes
        if not POOLED:
            return _create_unpooled(view), nbytes, False
        with self._lock:
            limit = 2 * nbytes + SEGMENT_STEP_BYTES  # a much bigger segment is not worth it
            fits = [(len(m), n) for n, (m, _) in self._free.items() if nbytes <= len(m) <= limit]
            name = min(fits)[1] if fits else None
            segment = self._free.pop(name)[0] if name else None
            used = sum(len(m) for m, _ in self._free.values())
            used += sum(len(m) for n, (m, _) in self._busy.items() if not os.path.isabs(n))  # noqa: PTH117
        if segment is None or name is None:
            name, segment = self._create(nbytes, used)
        segment[:nbytes] = view  # the one copy
        import time

        with self._lock:
            if self._closed:
                segment.close()
                _unlink(name)
                raise OSError("the session is closed")
            self._busy[name] = (segment, time.monotonic())
            self._trim_locked(time.monotonic())
        return name, nbytes, True

    def _create(self, nbytes: int, used: int) -> tuple[str, mmap.mmap]:
        size = -(-max(nbytes, 1) // SEGMENT_STEP_BYTES) * SEGMENT_STEP_BYTES
        stat = os.statvfs(_DEV_SHM)
        room = stat.f_bavail * stat.f_frsize
        if self.budget:
            room = min(room, self.budget - used)
        if size <= room:
            try:
                return _create_pooled(_DEV_SHM, size)
            except OSError as exc:  # raced for the room, or not allowed
                why = f"{_DEV_SHM}: {exc}"
        else:
            why = f"{_DEV_SHM} has {room >> 20} MB free"
        if self.spill is None:
            raise OSError(f"{why}, {size >> 20} MB needed")
        message = f"shared memory: {why}, {size >> 20} MB needed; using files in {self.spill}"
        self.warn_once("shm", message)
        return _create_pooled(self.spill, size)

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.warn(message)

    def release(self, names: Iterable[str]) -> None:
        """The peer let go of these segments: keep them for reuse, within POOL_KEEP_BYTES."""
        import time

        now = time.monotonic()
        with self._lock:
            for name in names:
                busy = self._busy.pop(name, None)
                if busy is not None:
                    self._free[name] = (busy[0], now)
            self._trim_locked(now)

    def _trim_locked(self, now: float) -> None:
        kept = sum(len(m) for m, _ in self._free.values())
        for name, (segment, released) in list(self._free.items()):
            idle = now - released >= self.idle_s
            if not idle and (kept <= POOL_KEEP_BYTES or len(self._free) <= POOL_KEEP_ALWAYS):
                continue
            del self._free[name]
            kept -= len(segment)
            segment.close()
            _unlink(name)
        busy_s = self.idle_s * BUSY_IDLE_FACTOR
        for name, (segment, sent) in list(self._busy.items()):
            if now - sent >= busy_s:  # the peer never let go: its mapping outlives the name
                del self._busy[name]
                segment.close()
                _unlink(name)
        ends = [t + self.idle_s for _, t in self._free.values()]
        ends += [t + busy_s for _, t in self._busy.values()]
        if ends and self._timer is None and not self._closed:
            self._timer = threading.Timer(max(min(ends) - now, 0.0), self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        import time

        with self._lock:
            self._timer = None
            self._trim_locked(time.monotonic())

    def abandon(self, entries: Iterable[Entry]) -> None:
        """A frame that will never be received: its segments are free again (or gone)."""
        entries = tuple(entries)
        for name, _, pooled in entries:
            if not pooled:
                unlink_segment(name)
        self.release(name for name, _, pooled in entries if pooled)

    def held(self) -> int:
        """Bytes of segments this side holds (free or in use)."""
        with self._lock:
            return sum(len(m) for m, _ in (*self._free.values(), *self._busy.values()))

    def close(self, *, unmap: bool = True) -> None:
        """Unlink every segment (peers' views stay valid); ``unmap=False``: about to _exit."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            segments = {n: m for n, (m, _) in (*self._free.items(), *self._busy.items())}
            self._free.clear()
            self._busy.clear()
        for name, segment in segments.items():
            if unmap:
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
        import mmap  # here, not at the top: most workers never see a large buffer
        import weakref

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
        for name in list(self._seen):
            _unlink(name)
        self._seen.clear()


def _create_pooled(folder: str, size: int) -> tuple[str, mmap.mmap]:
    import mmap

    name = new_name()
    path = os.path.join(folder, name)  # noqa: PTH118
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        # allocate now: a full /dev/shm then fails here (ENOSPC), not with SIGBUS on first write
        os.posix_fallocate(fd, 0, size)
        # and map every page now, in one go: the first copy then takes no page faults
        flags = mmap.MAP_SHARED | _POPULATE
        return (name if folder == _DEV_SHM else path), mmap.mmap(fd, size, flags=flags)
    except BaseException:
        _unlink(path)
        raise
    finally:
        os.close(fd)


def _open(name: str, *, create: bool, size: int = 0) -> shared_memory.SharedMemory:
    """Open a segment where there is no /dev/shm, keeping the resource tracker out of it."""
    from multiprocessing import shared_memory

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
    name = new_name()
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
