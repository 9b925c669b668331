"""Framed messages over the worker's socket once the handshake has authenticated it."""

# multiprocessing.connection authenticates the connection (the mutual HMAC challenge); after
# that both sides frame messages themselves on the same socket: an 8-byte length, then the
# frame. The reader fills a buffer with recv_into and usually finds a whole frame after one
# system call, where Connection.recv_bytes needs two (length, then body): on a round trip of a
# tiny call that is a good part of the cost. Mirrored in cema/_internal/executor_server.py.
# Windows named pipes keep Connection's own framing (PipeChannel).

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
from multiprocessing.connection import Connection
from typing import Protocol

LENGTH = struct.Struct("!Q")
#: the read buffer; a larger frame gets a buffer of its own
BUFFER_BYTES = 1 << 16
#: frames up to this size are sent with their length in one system call
COALESCE_BYTES = 1 << 16


class Channel(Protocol):
    """What the session needs from a transport."""

    def send(self, frame: bytes) -> None: ...
    def recv(self) -> bytes | bytearray: ...
    def poll(self, timeout_s: float) -> bool: ...
    def shutdown(self) -> None: ...
    def close(self) -> None: ...


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
        avail = self._end - self._start
        if avail >= LENGTH.size and avail - LENGTH.size >= LENGTH.unpack_from(
            self._buf, self._start
        )[0]:
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


def channel_for(conn: Connection) -> Channel:
    """The channel over an authenticated connection (which it takes over)."""
    if os.name != "posix":  # pragma: no cover - Windows
        return PipeChannel(conn)
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    conn.close()
    return SocketChannel(sock)
