"""The host's live connection to one worker: requests from many threads, replies by request id."""

# Readers: leader/followers instead of a dedicated reader thread. A waiting caller reads the
# connection itself when nobody else does (the leader) and hands every reply to the caller whose
# request id it carries; the others (followers) sleep on their own condition until their reply
# is handed over or the leader leaves, when one of them takes over reading. A lone caller thus
# reads its own reply with no thread hand-off, which is what makes a tiny call cost little more
# than the socket round trip; any number of threads still get each their own result.
#
# Failure: when the connection ends (EOF), the reader that sees it records why (exit code,
# stderr tail, or the host's own reason: closed, timed out) and resolves every pending call with
# that error; later calls raise it at once. A watcher thread waits on the process, so a worker
# whose socket lives on in a grandchild still ends the connection (shutdown wakes the reader).

from __future__ import annotations

import contextlib
import itertools
import logging
import pickle
import shutil
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cema import _proc
from cema._internal import protocol
from cema.errors import WorkerCrashedError, WorkerError, WorkerTimeoutError
from cema.runtime import process, replies

if TYPE_CHECKING:
    from cema.runtime.launch import Launched

#: how long close() waits to send the shutdown request before relying on signals alone
SEND_LOCK_WAIT_S = 1.0
#: when the connection is lost but the process lives on, how long before it is killed
ORPHAN_WAIT_S = 2.0
RESTART_HINT = "Start the worker again to make more calls."

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Death:
    """Why the worker takes no more calls."""

    message: str
    exitcode: int | None = None
    stderr_tail: str = ""
    closed: bool = False

    def error(self) -> WorkerError:
        if self.closed:
            return WorkerError(self.message, hint=RESTART_HINT)
        return WorkerCrashedError(
            self.message, exitcode=self.exitcode, stderr_tail=self.stderr_tail, hint=RESTART_HINT
        )


class _Pending:
    """One call in flight; its fields change only under the session lock."""

    __slots__ = ("cond", "death", "done", "reply", "request_id", "segments")

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self.done = False
        self.reply: protocol.Frame | None = None
        self.death: Death | None = None
        self.segments: tuple[protocol.Entry, ...] = ()
        self.cond: threading.Condition | None = None  # made when the caller has to follow


def _what(what: str | None, obj: object) -> str:
    """A request named in errors: ``what``, or a call's ``module:function``."""
    if what is not None:
        return what
    module, function = obj[:2]  # type: ignore[index]
    return f"{module}:{function}"


class Session:
    """Everything a live worker owns; the ``Worker`` handle may be collected before this is."""

    def __init__(self, name: str, launched: Launched) -> None:
        self.name = name
        self.proc = launched.proc
        self.channel = launched.channel
        self.pump = launched.pump
        self.folder = launched.folder
        self.lock = threading.Lock()  # guards pending, reading, death, stop_reason
        self.send_lock = threading.Lock()
        self.fail_lock = threading.Lock()  # one thread records the death, the others wait
        self.close_lock = threading.Lock()
        self.pending: dict[int, _Pending] = {}
        self.outbox = protocol.Outbox(log.warning, spill=str(self.folder))
        self.inbox = protocol.Inbox()
        self.reading = False
        self.ids = itertools.count(1)
        self.death: Death | None = None
        self.stop_reason: Death | None = None  # set when the host itself stops the worker
        self.exitcode: int | None = None
        self.closed = False
        self.watcher = threading.Thread(
            target=self._watch, name=f"cema-worker-{name}-watch", daemon=True
        )
        self.watcher.start()

    # --- calls -----------------------------------------------------------------------------------

    def request(self, kind: int, obj: object, *, what: str | None, timeout: float | None) -> Any:
        """Send one request and wait for its reply; ``what`` names it in errors.

        ``None`` for ``what``: a call, named by its module and function (text built on error).
        """
        lock = self.lock
        released = False  # set before reading can be taken: see the `finally` below
        with lock:
            if self.death is not None:
                raise self.death.error()
            request_id = next(self.ids)
            slot = self.pending[request_id] = _Pending(request_id)
            # a lone caller reads its own reply: no condition, no hand-off (see the top)
            lead = timeout is None and not self.reading
            if lead:
                self.reading = True
        # from here on a leader gives reading up whatever ends its turn: a pickling error, or
        # a KeyboardInterrupt between any two steps (else every later call waits as a follower)
        try:
            try:
                frame, segments = protocol.encode(
                    kind, request_id, obj, outbox=self.outbox, inbox=self.inbox
                )
            except Exception as exc:
                with lock:
                    self.pending.pop(request_id, None)
                raise WorkerError(
                    f"The arguments of {_what(what, obj)} cannot be pickled to send them to "
                    f"worker {self.name!r} ({type(exc).__name__}: {exc})."
                ) from exc
            if segments:
                slot.segments = segments
            try:
                with self.send_lock:
                    self.channel.send(frame)
            except (OSError, ValueError):
                pass  # the worker is gone: reading reports why
            if lead:
                released = self._read_until(slot, None)
        finally:
            if lead and not released:
                with lock:
                    self._stop_reading_locked()
        if not slot.done:
            self._wait(slot, None if timeout is None else time.monotonic() + timeout)
        reply = slot.reply
        if reply is not None:
            if reply[0] == protocol.RESULT:  # the common case, inline
                try:
                    return pickle.loads(reply[3], buffers=reply[4])  # noqa: S301
                except Exception as exc:
                    raise replies.result_error(exc, reply[2], _what(what, obj), self.name) from exc
            return replies.outcome(reply, what=lambda: _what(what, obj), worker=self.name)
        if slot.death is None:
            with lock:
                timed_out = not slot.done
                if timed_out:
                    self.pending.pop(request_id, None)
            if timed_out:
                self._stop_after_timeout(_what(what, obj), timeout)
                self._unlink(slot)
                raise WorkerTimeoutError(
                    f"{_what(what, obj)} did not finish within {timeout:g} s in worker "
                    f"{self.name!r}; the worker was stopped, because a running Python call "
                    "cannot be interrupted.",
                    hint=RESTART_HINT,
                )
        assert slot.death is not None
        self._unlink(slot)
        raise slot.death.error()

    def _wait(self, slot: _Pending, deadline: float | None) -> None:
        """Return when ``slot`` is resolved or the deadline passed, reading if nobody does."""
        while True:
            with self.lock:
                if slot.done:
                    return
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                if self.reading:
                    if slot.cond is None:
                        slot.cond = threading.Condition(self.lock)
                    slot.cond.wait(remaining)  # our reply, or the leader left
                    continue
                self.reading = True
            released = False
            try:
                released = self._read_until(slot, deadline)
            finally:
                if not released:
                    with self.lock:
                        self._stop_reading_locked()

    def _stop_reading_locked(self) -> None:
        self.reading = False
        for other in self.pending.values():  # a follower takes over reading
            if other.cond is not None:
                other.cond.notify()
                break

    def _read_until(self, slot: _Pending, deadline: float | None) -> bool:
        """Read and hand out replies until ours is in; True if reading was given up with it."""
        while not slot.done:
            try:
                if deadline is not None and not self.channel.poll(deadline - time.monotonic()):
                    return False
                frame = self.channel.recv()
            except (EOFError, OSError):
                self.disconnected()
                return False
            if self._dispatch(frame, slot):
                return True
        return False

    def _dispatch(self, frame: bytes | bytearray, mine: _Pending | None = None) -> bool:
        """Hand a reply to its caller; True when it was ``mine`` (then reading is given up)."""
        try:
            reply: protocol.Frame | None = protocol.decode(
                frame, inbox=self.inbox, outbox=self.outbox
            )
            death = None
        except Exception as exc:  # the waiting caller gets the reason
            log.warning("worker %r sent a frame that cannot be decoded: %s", self.name, exc)
            reply = None
            death = Death(
                message=f"Worker {self.name!r} sent a reply that cannot be decoded "
                f"({type(exc).__name__}: {exc})."
            )
        try:
            request_id = reply[1] if reply else protocol.HEADER.unpack_from(frame)[1]
        except struct.error:
            return False  # not even a header: nobody to tell
        with self.lock:  # one lock round for the common case: our reply, reading given up
            slot = self.pending.pop(request_id, None)
            if slot is None:
                return False
            self._resolve(slot, reply, death)
            if slot is mine:
                self._stop_reading_locked()
                return True
            return False

    @staticmethod
    def _resolve(slot: _Pending, reply: protocol.Frame | None, death: Death | None) -> None:
        slot.reply = reply
        slot.death = death
        slot.done = True
        if slot.cond is not None:
            slot.cond.notify()

    def _unlink(self, slot: _Pending) -> None:
        self.outbox.abandon(slot.segments)

    def _stop_after_timeout(self, what: str, timeout: float | None) -> None:
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = Death(
                    message=f"Worker {self.name!r} was stopped because {what} exceeded its "
                    f"timeout of {timeout:g} s."
                )
        _proc.signal_group(self.proc, _proc.SIGKILL)

    # --- the end ---------------------------------------------------------------------------------

    def _ask_to_exit(self) -> None:
        """The ladder's first rung: the shutdown request, and EOF on the worker's stdin."""
        # a sender stuck on a full socket must not stall close(): then skip the request
        if self.proc.poll() is None and self.send_lock.acquire(timeout=SEND_LOCK_WAIT_S):
            try:
                frame, _ = protocol.encode(
                    protocol.SHUTDOWN, next(self.ids), None, outbox=self.outbox, inbox=self.inbox
                )
                self.channel.send(frame)
            except (OSError, ValueError):
                pass  # already going away
            finally:
                self.send_lock.release()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # EOF on stdin makes the worker exit in any case

    def _watch(self) -> None:
        self.proc.wait()
        _proc.signal_group(self.proc, _proc.SIGKILL)  # what a crashed worker left running
        self._wake_reader()

    def _wake_reader(self) -> None:
        self.channel.shutdown()

    def disconnected(self) -> None:
        """The connection is gone: record why, resolve every pending call, refuse later ones."""
        with self.fail_lock:
            if self.death is not None:
                return
            try:
                exitcode = self.proc.wait(timeout=ORPHAN_WAIT_S)
            except subprocess.TimeoutExpired:  # connection lost, process alive: end it
                _proc.signal_group(self.proc, _proc.SIGKILL)
                exitcode = self.proc.wait()
            self.pump.join()
            with self.lock:
                death = self.stop_reason or Death(
                    message=f"Worker {self.name!r} (pid {self.proc.pid}) "
                    f"{process.describe_exit(exitcode)}."
                )
                if not death.closed:
                    death = replace(death, exitcode=exitcode, stderr_tail=self.pump.stderr_tail())
                self.death = death
                pending, self.pending = self.pending, {}
                for slot in pending.values():
                    self._resolve(slot, None, death)
        for slot in pending.values():
            self._unlink(slot)
        # the worker maps nothing any more: our segments go, and those it made (arrays the
        # host received stay valid: their mappings outlive the names)
        self.outbox.close()
        self.inbox.unlink_seen()

    def close(self, timeout_s: float) -> int | None:
        """Ask, terminate, kill (``_proc.stop``); resolve what is pending; idempotent."""
        with self.close_lock:
            if self.closed:
                return self.exitcode
            self.closed = True
            with self.lock:
                if self.stop_reason is None:
                    self.stop_reason = Death(
                        message=f"Worker {self.name!r} is closed.", closed=True
                    )
            self.exitcode = _proc.stop(self.proc, ask=self._ask_to_exit, grace_s=timeout_s)
            self._wake_reader()
            self.disconnected()
            self.watcher.join()
            self.pump.join()
            with self.lock:
                # a reader may still be on its way out of recv(): never close under it
                idle = not self.reading
                self.reading = True  # nobody reads again: every call is resolved
            if idle:
                self.channel.close()
            shutil.rmtree(self.folder, ignore_errors=True)
            log.debug("worker %r %s", self.name, process.describe_exit(self.exitcode))
            return self.exitcode
