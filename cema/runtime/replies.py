"""What a worker's reply means to its caller: the value, or the worker's exception rebuilt."""

# The bytes are cema._internal.protocol's, shared with the server; this is the host-only part,
# which raises Cema's errors.

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from cema._internal import protocol
from cema.errors import ProtocolError, RemoteError, WorkerError

#: the attribute that carries the worker's traceback text on a rebuilt exception
REMOTE_TRACEBACK_ATTR = "__cema_remote_traceback__"


def outcome(reply: protocol.Frame, *, what: Callable[[], str], worker: str) -> Any:
    """The value of a reply, or raise what the worker raised (as its own type where possible)."""
    kind, _, note, body, buffers = reply
    if kind == protocol.RESULT:
        try:
            return pickle.loads(body, buffers=buffers)  # noqa: S301
        except Exception as exc:
            raise result_error(exc, note, what(), worker) from exc
    if kind == protocol.UNPICKLABLE:
        reason = pickle.loads(body)  # noqa: S301
        raise WorkerError(
            f"{what()} in worker {worker!r} returned a {note}, which cannot be pickled to "
            f"send it to the host ({reason}).",
            hint="Return plain data (builtins, numpy arrays) instead.",
        )
    if kind == protocol.ERROR:
        raise rebuild_error(pickle.loads(body), worker=worker)  # noqa: S301
    raise ProtocolError(f"Worker {worker!r} answered {what()} with an unknown kind {kind}.")


def result_error(exc: Exception, note: str, what: str, worker: str) -> WorkerError:
    """A result the host cannot unpickle, explained (``note``: its type's name, if known)."""
    return WorkerError(
        f"The result of {what} in worker {worker!r} "
        + (f"is a {note}, which " if note else "")
        + f"cannot be unpickled in the host ({type(exc).__name__}: {exc}).",
        hint="Return plain data (builtins, numpy arrays) or make the type importable in the host.",
    )


def rebuild_error(info: tuple[str, str, str, bytes | None], *, worker: str) -> Exception:
    """The worker's exception as its own type with the remote traceback, else a RemoteError.

    Only an ``Exception`` is rebuilt as itself: a ``SystemExit``, ``KeyboardInterrupt`` or
    ``GeneratorExit`` the worker's code raised (and the worker caught: it serves on) would
    otherwise end or interrupt the host; it arrives as a ``RemoteError`` naming its type.
    """
    type_name, message, remote_traceback, pickled = info
    if pickled is not None:
        try:
            exc = pickle.loads(pickled)  # noqa: S301
        except Exception:  # noqa: S110 - the class lives only in the worker
            pass
        else:
            if isinstance(exc, Exception):
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
