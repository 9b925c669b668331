"""The one helper that runs subprocesses: logs, captures, raises with a tail; one stop ladder."""

# Children die with us. On Linux every child gets the parent-death signal (SIGKILL), set after
# fork and before exec (``preexec_fn``; kept across exec), so a `kill -9` of the host (or of
# `cema sync`) ends its workers and its uv / micromamba at once, even a worker stuck in C code
# holding the GIL, whose own host watch (EOF on stdin) cannot run then. After the prctl the
# child compares getppid() with the pid it was forked from: a host that died before the prctl
# took effect is caught too.
#
# The gotcha: the kernel sends that signal when the *thread* that forked the child ends, not the
# process, and hosts start workers from short-lived threads (Dask, thread pools). So a child is
# forked either by the main thread (which lives as long as the process: CPython waits in it for
# the other threads at exit) or, from any other thread, by one long-lived daemon thread of ours
# (`_Spawner`) that does nothing else. `run` and `stream` block their thread until the child
# ends (and stop it when interrupted), so their children cannot outlive the forking thread.
# The price of ``preexec_fn``: fork instead of vfork, a few milliseconds in a big host.
#
# Elsewhere (no such signal): macOS would need a watcher outside the GIL (a kqueue NOTE_EXIT on
# the host's pid in a helper process); Windows, a job object with KILL_ON_JOB_CLOSE holding the
# children. Neither is done: there, workers exit on EOF of their stdin (a watch thread), which
# covers every case but C code holding the GIL forever; engines run until they finish.

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from cema.errors import CommandFailedError
from cema.model.urls import redact

log = logging.getLogger(__name__)
OUTPUT_TAIL_LINES = 25
#: how long an interrupted child gets to stop before it is killed
STOP_TIMEOUT_S = 10.0
#: in the stop ladder, how long a child gets after SIGTERM before SIGKILL, unless told otherwise
TERMINATE_GRACE_S = 2.0
#: SIGKILL where it exists (Windows kills with taskkill instead)
SIGKILL: int = getattr(signal, "SIGKILL", signal.SIGTERM)


def tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(
    cmd: Sequence[str | Path],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    hint: str | None = None,
    timeout_s: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (no shell), capturing output; ``CommandFailedError`` names ``what`` failed."""
    argv = [str(c) for c in cmd]
    log.debug("running: %s", redact(" ".join(argv)))
    try:
        # forked in this thread, which waits for the child (or kills it when interrupted)
        proc = subprocess.run(
            argv,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            preexec_fn=die_with_parent(),
        )
    except FileNotFoundError:
        raise CommandFailedError(f"{what} failed: {argv[0]} was not found.", hint=hint) from None
    except subprocess.TimeoutExpired as exc:
        raise CommandFailedError(
            f"{what} did not finish within {timeout_s:.0f} s.",
            output_tail=redact(tail(str(exc.stderr or ""))),
            hint=hint,
        ) from None
    if proc.returncode != 0:
        output = (proc.stderr or "") + (proc.stdout or "")
        raise CommandFailedError(
            f"{what} failed (exit code {proc.returncode}):",
            returncode=proc.returncode,
            output_tail=redact(tail(output)),
            hint=hint,
        )
    return proc


def stream(
    cmd: Sequence[str | Path],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    hint: str | None = None,
) -> None:
    """Run ``cmd`` (no shell), handing each output line (redacted) to ``on_line`` as it comes.

    ``CommandFailedError`` names ``what`` and carries the output's tail; an interrupted run
    stops the child and its process group (``stop``: terminate, then kill).
    """
    argv = [str(c) for c in cmd]
    log.debug("running: %s", redact(" ".join(argv)))
    last: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL_LINES)
    try:
        proc = spawn(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise CommandFailedError(f"{what} could not start ({exc}).", hint=hint) from None
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = redact(raw.rstrip("\n"))
            last.append(line)
            if on_line is not None:
                on_line(line)
        returncode = proc.wait()
    except BaseException:
        stop(proc, grace_s=0.0, terminate_grace_s=STOP_TIMEOUT_S)
        raise
    if returncode != 0:
        raise CommandFailedError(
            f"{what} failed (exit code {returncode}):",
            returncode=returncode,
            output_tail="\n".join(last),
            hint=hint,
        )


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: Path | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    pass_fds: Sequence[int] = (),
    text: bool = False,
) -> subprocess.Popen[Any]:
    """Start ``argv`` in a process group of its own, so ``stop`` can signal its whole tree.

    POSIX: a new session (the group id is the child's pid). Linux: the child dies with this
    process (the parent-death signal), whichever thread calls. ``text``: line-buffered text,
    with undecodable bytes replaced.
    """
    options: dict[str, Any] = {"text": True, "errors": "replace", "bufsize": 1} if text else {}
    if os.name == "nt":  # pragma: no cover - Windows
        options["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    else:
        options.update(
            start_new_session=True, pass_fds=tuple(pass_fds), preexec_fn=die_with_parent()
        )

    def popen() -> subprocess.Popen[Any]:
        return subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            **options,
        )

    if options.get("preexec_fn") is None or threading.current_thread() is threading.main_thread():
        return popen()
    return _SPAWNER.run(popen)  # this thread may end before the child: fork in a lasting one


#: prctl(2) option: the signal a process gets when its parent (thread) dies
PR_SET_PDEATHSIG = 1


@cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, resolved in the parent (the child only calls it), or None."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child killed when this process dies (Linux), else None.

    The child is killed when the forking *thread* ends: see the top of this module.
    """
    prctl = _prctl() if sys.platform.startswith("linux") else None
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: no locks, no logging
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # we died before the prctl: follow at once
            os.kill(os.getpid(), SIGKILL)

    return preexec


class _Job:
    __slots__ = ("done", "error", "make", "proc")

    def __init__(self, make: Callable[[], subprocess.Popen[Any]]) -> None:
        self.make = make
        self.done = threading.Event()
        self.proc: subprocess.Popen[Any] | None = None
        self.error: BaseException | None = None


class _Spawner:
    """One long-lived daemon thread that forks the children of threads that may end sooner."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._pid = 0  # the process whose thread serves _jobs (a forked child starts anew)

    def run(self, make: Callable[[], subprocess.Popen[Any]]) -> subprocess.Popen[Any]:
        job = _Job(make)
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._jobs = queue.SimpleQueue()
                threading.Thread(
                    target=self._serve, args=(self._jobs,), name="cema-spawner", daemon=True
                ).start()
            self._jobs.put(job)
        try:
            job.done.wait()
        except BaseException:  # interrupted while the fork runs: wait for it, then undo it
            job.done.wait()
            if job.proc is not None:
                signal_group(job.proc, SIGKILL)
                job.proc.wait()
            raise
        if job.error is not None:
            raise job.error
        assert job.proc is not None
        return job.proc

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[_Job]) -> None:
        while True:
            job = jobs.get()
            try:
                job.proc = job.make()
            except BaseException as exc:  # the caller raises it
                job.error = exc
            finally:
                job.done.set()
            del job


_SPAWNER = _Spawner()


def signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    """Send ``sig`` to the process group of a child started by ``spawn``: grandchildren too."""
    if os.name == "nt":  # pragma: no cover - Windows has no process groups to signal
        if sig == signal.SIGTERM:
            proc.terminate()
        else:
            subprocess.run(
                ["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False
            )
        return
    # the group id is the child's pid (a new session); while the child is unreaped or any member
    # remains, that id cannot belong to anyone else
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(
    proc: subprocess.Popen[Any],
    *,
    ask: Callable[[], None] | None = None,
    grace_s: float,
    terminate_grace_s: float = TERMINATE_GRACE_S,
) -> int:
    """The stop ladder: ``ask()``, wait ``grace_s``; SIGTERM the group, wait; SIGKILL it.

    Always reaps the child, and kills whatever it left running in its group. Returns the exit
    code (negative: killed by that signal).
    """
    if ask is not None:
        ask()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.debug("pid %d still runs after %g s; terminating its process group", proc.pid, grace_s)
        signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=terminate_grace_s)
        except subprocess.TimeoutExpired:
            log.debug("pid %d ignored SIGTERM; killing its process group", proc.pid)
            signal_group(proc, SIGKILL)
            proc.wait()
    signal_group(proc, SIGKILL)  # whatever the child left running in its group
    return proc.returncode
