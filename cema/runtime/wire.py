"""The host's half of the worker wire format: frames, request kinds, and rebuilt remote errors."""

# Mirrors cema/_internal/executor_server.py, which runs under the env's python and cannot import
# cema; tests/integration/test_runtime_wire.py checks that the two agree. A frame is
#   HEADER (kind, request id, segment-table length, note length) + note (utf-8)
#   + segment table (pickled tuple of (name, nbytes)) + body (pickle protocol 5)
# Unpickling is safe only because the peer proved it holds the per-launch key (the worker runs
# the host's own code anyway). The request id sits outside the pickles so a reply that cannot be
# unpickled still reaches the caller that waits for it.

from __future__ import annotations

import logging
import pickle
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from cema.errors import ProtocolError, RemoteError, WorkerError
from cema.runtime import shm

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BQIH")
PICKLE_PROTOCOL = 5

HELLO = 1
CALL = 2
IMPORT = 3
SHUTDOWN = 4
RESULT = 5
ERROR = 6
UNPICKLABLE = 7

#: the attribute that carries the worker's traceback text on a rebuilt exception
REMOTE_TRACEBACK_ATTR = "__cema_remote_traceback__"

log = logging.getLogger(__name__)


class Reply(NamedTuple):
    """A decoded frame header with its body still pickled (decoded by the waiting caller).

    A NamedTuple rather than a frozen dataclass: one is built per call, and this is cheaper.
    """

    kind: int
    request_id: int
    note: str
    body: memoryview | bytes
    buffers: tuple[memoryview, ...]


def encode(
    kind: int, request_id: int, obj: object, *, outbox: shm.Outbox, inbox: shm.Inbox
) -> tuple[bytes, tuple[shm.Entry, ...]]:
    """Pickle ``obj`` into one frame; large buffers go to the outbox's segments.

    The frame also tells the peer which of its segments we let go of since the last frame.
    Returns the frame and the entries it names (to abandon if the frame is never received).
    """
    large: list[pickle.PickleBuffer] = []

    def keep_large_out_of_band(buffer: pickle.PickleBuffer) -> bool:
        view = memoryview(buffer)
        if view.nbytes < shm.SHM_THRESHOLD_BYTES or not view.contiguous:
            return True
        large.append(buffer)
        return False

    body = pickle.dumps(obj, PICKLE_PROTOCOL, buffer_callback=keep_large_out_of_band)
    if not large and not inbox.released:  # the common case, kept short
        return HEADER.pack(kind, request_id, 0, 0) + body, ()
    entries: list[shm.Entry] = []
    try:
        for buffer in large:
            entries.append(outbox.put(buffer))
    except OSError as exc:  # shared memory is full or missing: send the buffers in band
        outbox.abandon(entries)
        log.warning("shared memory unavailable (%s); sending %d bytes in band", exc,
                    sum(memoryview(b).nbytes for b in large))
        entries = []
        body = pickle.dumps(obj, PICKLE_PROTOCOL)
    except BaseException:
        outbox.abandon(entries)
        raise
    table = pickle.dumps((tuple(entries), inbox.drain()), PICKLE_PROTOCOL)
    header = HEADER.pack(kind, request_id, len(table), 0)
    return b"".join((header, table, body)), tuple(entries)


def decode(frame: bytes | bytearray, *, inbox: shm.Inbox, outbox: shm.Outbox) -> Reply:
    """Split a frame, map its segments, and take back the segments the peer let go of."""
    kind, request_id, table_len, note_len = HEADER.unpack_from(frame)
    if not table_len and not note_len:  # the common case, kept short
        return Reply(kind, request_id, "", memoryview(frame)[HEADER.size :], ())
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
    return Reply(kind, request_id, note, view[start:], tuple(buffers))


def outcome(reply: Reply, *, what: Callable[[], str], worker: str) -> Any:
    """The value of a reply, or raise what the worker raised (as its own type where possible)."""
    if reply.kind == RESULT:
        try:
            return pickle.loads(reply.body, buffers=reply.buffers)  # noqa: S301
        except Exception as exc:
            raise WorkerError(
                f"The result of {what()} in worker {worker!r} "
                + (f"is a {reply.note}, which " if reply.note else "")
                + f"cannot be unpickled in the host ({type(exc).__name__}: {exc}).",
                hint="Return plain data (builtins, numpy arrays) or make the type importable "
                "in the host.",
            ) from exc
    if reply.kind == UNPICKLABLE:
        reason = pickle.loads(reply.body)  # noqa: S301
        raise WorkerError(
            f"{what()} in worker {worker!r} returned a {reply.note}, which cannot be pickled to "
            f"send it to the host ({reason}).",
            hint="Return plain data (builtins, numpy arrays) instead.",
        )
    if reply.kind == ERROR:
        raise rebuild_error(pickle.loads(reply.body), worker=worker)  # noqa: S301
    raise ProtocolError(f"Worker {worker!r} answered {what()} with an unknown kind {reply.kind}.")


def rebuild_error(info: tuple[str, str, str, bytes | None], *, worker: str) -> BaseException:
    """The worker's exception as its own type with the remote traceback, else a RemoteError."""
    type_name, message, remote_traceback, pickled = info
    if pickled is not None:
        try:
            exc = pickle.loads(pickled)  # noqa: S301
        except Exception:  # noqa: S110 - the class lives only in the worker
            pass
        else:
            if isinstance(exc, BaseException):
                _attach_traceback(exc, remote_traceback, worker=worker)
                return exc
    return RemoteError(message, remote_type=type_name, remote_traceback=remote_traceback)


def _attach_traceback(exc: BaseException, text: str, *, worker: str) -> None:
    try:
        setattr(exc, REMOTE_TRACEBACK_ATTR, text)
    except (AttributeError, TypeError):
        return  # a class with __slots__: the text stays out, the type still arrives
    add_note: Callable[[str], None] | None = getattr(exc, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(f"Remote traceback (worker {worker!r}):\n{text.rstrip()}")
