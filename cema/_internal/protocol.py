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
# Shared memory: large out-of-band buffers travel in segments (segments.py, re-exported here).
#
# Framing: after multiprocessing.connection's HMAC challenge, both sides send an 8-byte length,
# then the frame. The reader's recv_into buffer usually holds a whole frame after one system call
# (Connection.recv_bytes needs two): a good part of a tiny call's round trip.

from __future__ import annotations

import contextlib
import os
import pickle
import select
import socket
import struct
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from . import segments

    Entry = segments.Entry

    #: a decoded frame: (kind, request id, note, body, buffers); the caller unpickles the body.
    #: A plain tuple, not a NamedTuple: one is built per call on each side, and this is cheaper.
    Frame = tuple[int, int, str, memoryview, tuple[memoryview, ...]]

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BQIH")
PICKLE_PROTOCOL = 5

#: message kinds: HELLO (the worker's first), CALL, IMPORT, SHUTDOWN (requests), then replies
HELLO, CALL, IMPORT, SHUTDOWN, RESULT, ERROR, UNPICKLABLE = range(1, 8)


def _load_segments() -> object:
    """segments.py beside this file, by path on both sides (as in a worker, where Cema is not)."""
    name = "_cema_segments"
    if name not in sys.modules:
        import importlib.util

        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "segments.py")  # noqa: PTH100,PTH118,PTH120
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


if not TYPE_CHECKING:  # the type checker knows it as `from . import segments`
    segments = _load_segments()

SHM_THRESHOLD_BYTES = segments.SHM_THRESHOLD_BYTES
SHM_PREFIX = segments.SHM_PREFIX
POOLED = segments.POOLED
Outbox = segments.Outbox
Inbox = segments.Inbox
unlink_segment = segments.unlink_segment
unlink_orphans = segments.unlink_orphans
alive = segments.alive

LENGTH = struct.Struct("!Q")
#: the read buffer; a larger frame gets a buffer of its own
BUFFER_BYTES = 1 << 16
#: frames up to this size are sent with their length in one system call
COALESCE_BYTES = 1 << 16


def encode(
    kind: int, request_id: int, obj: object, note: str = "", *, outbox: Outbox, inbox: Inbox
) -> tuple[bytes, tuple[Entry, ...]]:
    """``obj`` framed with the inbox's releases; also the outbox entries it names (to abandon)."""
    # out of band first, every buffer: a callback that only collects is the cheapest to pass
    large: list[pickle.PickleBuffer] = []
    body = pickle.dumps(obj, PICKLE_PROTOCOL, buffer_callback=large.append)
    if not large and not note and not inbox.released:  # the common case, kept short
        return HEADER.pack(kind, request_id, 0, 0) + body, ()
    if large:  # again, with small and non-contiguous buffers in band
        large.clear()

        def keep_large_out_of_band(buffer: pickle.PickleBuffer) -> bool:
            view = memoryview(buffer)
            if view.nbytes < SHM_THRESHOLD_BYTES or not view.contiguous:
                return True
            large.append(buffer)
            return False

        body = pickle.dumps(obj, PICKLE_PROTOCOL, buffer_callback=keep_large_out_of_band)
    entries: list[Entry] = []
    try:
        for buffer in large:
            entries.append(outbox.put(buffer))
    except OSError as exc:  # shared memory is full or missing: send the buffers in band
        outbox.abandon(entries)
        outbox.warn_once("band", f"shared memory unavailable ({exc}); buffers go in band")
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
