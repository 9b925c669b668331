"""The worker wire protocol: frames, shared-memory segments, socket framing, the bootstrap line."""

# One file for both sides: the host imports cema._internal.protocol; the executor server, under
# the env's python (3.8 to 3.13, no Cema there), loads it by path under a private name. So it is
# standard library only in 3.8 syntax, and imports typing only for the type checker (importing
# it would cost a worker's start-up milliseconds on 3.8). Ruff targets 3.10: what it would spell
# the 3.10 way (builtin generics, `X | None`) appears only in annotations and under TYPE_CHECKING,
# so no rule is turned off here (RUF100 would flag it); the 3.8 tests of test_runtime_wire.py
# catch a slip.
#
# A frame is HEADER (kind, request id, table length, note length) + note (utf-8: a result's type,
# to explain one the host cannot unpickle) + table (pickled: (segment entries, names of the peer's
# segments we let go of)) + body (pickle protocol 5). The request id sits outside the pickles so a
# reply that cannot be unpickled still reaches its caller. Unpickling is safe only because the
# peer proved it holds the per-launch key.
#
# Shared memory (Linux, /dev/shm): an out-of-band buffer of SHM_THRESHOLD_BYTES or more is copied
# into a segment of the sender's Outbox, which the receiver maps (zero copy). When the last view
# of a mapping is gone, the receiver's Inbox notes the name and its next frame tells the sender,
# which reuses the segment: its pages stay allocated, so a repeated transfer costs one memcpy, not
# a page allocation. Owners unlink their segments at the end; a survivor unlinks what a dead peer
# made (it saw every name). Elsewhere: a multiprocessing.shared_memory segment per buffer.
#
# Framing: after multiprocessing.connection's HMAC challenge, both sides send an 8-byte length,
# then the frame. The reader's recv_into buffer usually holds a whole frame after one system call
# (Connection.recv_bytes needs two): a good part of a tiny call's round trip.

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import select
import socket
import struct
import sys
import threading

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import mmap
    from collections.abc import Callable, Iterable
    from multiprocessing import shared_memory
    from multiprocessing.connection import Connection

    #: one table entry: (segment name, bytes used, pooled)
    Entry = tuple[str, int, bool]
    #: a decoded frame: (kind, request id, note, body, buffers); the caller unpickles the body.
    #: A plain tuple, not a NamedTuple: one is built per call on each side, and this is cheaper.
    Frame = tuple[int, int, str, memoryview, tuple[memoryview, ...]]

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BQIH")
PICKLE_PROTOCOL = 5

#: message kinds: HELLO (the worker's first), CALL, IMPORT, SHUTDOWN (requests), then replies
HELLO, CALL, IMPORT, SHUTDOWN, RESULT, ERROR, UNPICKLABLE = range(1, 8)

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

LENGTH = struct.Struct("!Q")
#: the read buffer; a larger frame gets a buffer of its own
BUFFER_BYTES = 1 << 16
#: frames up to this size are sent with their length in one system call
COALESCE_BYTES = 1 << 16


def _path(name: str) -> str:
    return os.path.join(_DEV_SHM, name)  # noqa: PTH118 - a plain string for os.open


def _unlink(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_path(name))  # noqa: PTH108


class Outbox:
    """Segments this side made to send buffers, reused once the peer lets go of them.

    ``warn`` hears of it when shared memory fails and the buffers go in band instead.
    """

    def __init__(self, warn: Callable[[str], object]) -> None:
        self.warn = warn
        self._lock = threading.Lock()
        self._free: dict[str, mmap.mmap] = {}  # insertion order: oldest release first
        self._busy: dict[str, mmap.mmap] = {}
        self._closed = False

    def put(self, buffer: pickle.PickleBuffer) -> Entry:
        """Copy a contiguous buffer into a segment; the peer gets the returned entry."""
        view = buffer.raw()
        nbytes = view.nbytes
        if not POOLED:
            return _create_unpooled(view), nbytes, False
        with self._lock:
            limit = 2 * nbytes + SEGMENT_STEP_BYTES  # a much bigger segment is not worth it
            fits = [(len(m), n) for n, m in self._free.items() if nbytes <= len(m) <= limit]
            name = min(fits)[1] if fits else None
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
        entries = tuple(entries)
        for name, _, pooled in entries:
            if not pooled:
                unlink_segment(name)
        self.release(name for name, _, pooled in entries if pooled)

    def close(self, *, unmap: bool = True) -> None:
        """Unlink every segment (peers' views stay valid); ``unmap=False``: about to _exit."""
        with self._lock:
            self._closed = True
            segments = {**self._free, **self._busy}
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


def _create_pooled(nbytes: int) -> tuple[str, mmap.mmap]:
    import mmap

    size = -(-max(nbytes, 1) // SEGMENT_STEP_BYTES) * SEGMENT_STEP_BYTES
    name = SHM_PREFIX + os.urandom(8).hex()
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
    name = SHM_PREFIX + os.urandom(8).hex()
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


def encode(
    kind: int, request_id: int, obj: object, note: str = "", *, outbox: Outbox, inbox: Inbox
) -> tuple[bytes, tuple[Entry, ...]]:
    """``obj`` framed with the inbox's releases; also the outbox entries it names (to abandon)."""
    large: list[pickle.PickleBuffer] = []

    def keep_large_out_of_band(buffer: pickle.PickleBuffer) -> bool:
        view = memoryview(buffer)
        if view.nbytes < SHM_THRESHOLD_BYTES or not view.contiguous:
            return True
        large.append(buffer)
        return False

    body = pickle.dumps(obj, PICKLE_PROTOCOL, buffer_callback=keep_large_out_of_band)
    if not large and not note and not inbox.released:  # the common case, kept short
        return HEADER.pack(kind, request_id, 0, 0) + body, ()
    entries: list[Entry] = []
    try:
        for buffer in large:
            entries.append(outbox.put(buffer))
    except OSError as exc:  # shared memory is full or missing: send the buffers in band
        outbox.abandon(entries)
        nbytes = sum(memoryview(b).nbytes for b in large)
        outbox.warn(f"shared memory unavailable ({exc}); sending {nbytes} bytes in band")
        entries = []
        body = pickle.dumps(obj, PICKLE_PROTOCOL)
    except BaseException:
        outbox.abandon(entries)
        raise
    table = pickle.dumps((tuple(entries), inbox.drain()), PICKLE_PROTOCOL)
    note_bytes = note.encode("utf-8", "replace")[:0xFFFF]
    header = HEADER.pack(kind, request_id, len(table), len(note_bytes))
    return b"".join((header, note_bytes, table, body)), tuple(entries)


def decode(frame: bytes | bytearray, *, inbox: Inbox, outbox: Outbox) -> Frame:
    """Split a frame, map its segments, and take back the segments the peer let go of."""
    kind, request_id, table_len, note_len = HEADER.unpack_from(frame)
    if not table_len and not note_len:  # the common case, kept short
        return kind, request_id, "", memoryview(frame)[HEADER.size :], ()
    view = memoryview(frame)
    start = HEADER.size
    note = bytes(view[start : start + note_len]).decode("utf-8", "replace")
    start += note_len
    buffers: list[memoryview] = []
    if table_len:
        entries, released = pickle.loads(view[start : start + table_len])  # noqa: S301
        outbox.release(released)
        for entry in entries:
            buffers.append(inbox.map(entry))
        start += table_len
    return kind, request_id, note, view[start:], tuple(buffers)


class SocketChannel:
    """Length-prefixed frames on a connected stream socket; one reader and one sender at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray(BUFFER_BYTES)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    def send(self, frame: bytes) -> None:
        header = LENGTH.pack(len(frame))
        if len(frame) <= COALESCE_BYTES:
            self._sock.sendall(header + frame)
        else:
            self._sock.sendall(header)
            self._sock.sendall(frame)

    def recv(self) -> bytes | bytearray:
        """The next frame; ``EOFError`` when the peer is gone."""
        while True:
            avail = self._end - self._start
            if avail >= LENGTH.size:
                size = LENGTH.unpack_from(self._buf, self._start)[0]
                begin = self._start + LENGTH.size
                if avail - LENGTH.size >= size:
                    frame = bytes(self._view[begin : begin + size])
                    self._start = begin + size
                    if self._start == self._end:
                        self._start = self._end = 0
                    return frame
                if size > len(self._buf) - LENGTH.size:
                    return self._recv_large(begin, size)
            if self._end == len(self._buf):  # make room: move the partial frame to the front
                self._buf[:avail] = self._buf[self._start : self._end]
                self._start, self._end = 0, avail
            got = self._sock.recv_into(self._view[self._end :])
            if not got:
                raise EOFError("the peer closed the connection")
            self._end += got

    def _recv_large(self, begin: int, size: int) -> bytearray:
        frame = bytearray(size)
        have = self._end - begin
        frame[:have] = self._view[begin : self._end]
        self._start = self._end = 0
        view = memoryview(frame)
        while have < size:
            got = self._sock.recv_into(view[have:])
            if not got:
                raise EOFError("the peer closed the connection")
            have += got
        return frame

    def poll(self, timeout_s: float) -> bool:
        """Whether a frame (or EOF) can be read without waiting longer than ``timeout_s``."""
        start, avail = self._start, self._end - self._start
        if avail >= LENGTH.size and avail - LENGTH.size >= LENGTH.unpack_from(self._buf, start)[0]:
            return True
        # poll(), not select(): a host with more than 1024 open files is fine
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        return bool(poller.poll(max(timeout_s, 0.0) * 1000.0))

    def shutdown(self) -> None:
        """Wake a reader blocked in ``recv`` (it gets EOF); safe from any thread."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._sock.close()


class PipeChannel:  # pragma: no cover - Windows named pipes
    """Connection's own framing, where the transport is not a socket."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def send(self, frame: bytes) -> None:
        self._conn.send_bytes(frame)

    def recv(self) -> bytes:
        return self._conn.recv_bytes()

    def poll(self, timeout_s: float) -> bool:
        return self._conn.poll(timeout_s)

    def shutdown(self) -> None:
        self._conn.close()

    def close(self) -> None:
        self._conn.close()


def bootstrap_line(authkey: bytes, fd: int | None, address: str) -> bytes:
    """The host's line to the worker's stdin (the key is never in argv, the env or a log)."""
    head = f"{PROTOCOL_VERSION} {authkey.hex()} {'-' if fd is None else fd} "
    return head.encode("ascii") + os.fsencode(address) + b"\n"


def parse_bootstrap(line: bytes) -> tuple[int, bytes, int | None, str]:
    """``bootstrap_line`` read back: (protocol, authkey, listening fd or None, address)."""
    version, key_hex, fd, address = line.rstrip(b"\n").split(b" ", 3)
    listening = None if fd == b"-" else int(fd)
    return int(version), bytes.fromhex(key_hex.decode("ascii")), listening, os.fsdecode(address)
