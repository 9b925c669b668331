"""The worker's operating-system process: spawning, output to logging, and the stop ladder."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

#: stderr lines kept for crash messages
STDERR_TAIL_LINES = 50
#: after the shutdown request, how long the worker gets to exit by itself
SHUTDOWN_GRACE_S = 5.0
#: after SIGTERM, how long before SIGKILL
TERMINATE_GRACE_S = 2.0
#: how long to wait for the output pipes to drain once the process is gone
DRAIN_TIMEOUT_S = 2.0

#: SIGKILL where it exists (Windows kills with taskkill instead)
SIGKILL: int = getattr(signal, "SIGKILL", signal.SIGTERM)

log = logging.getLogger(__name__)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None,
    pass_fds: Sequence[int],
    capture_output: bool,
) -> subprocess.Popen[bytes]:
    """Start the worker in its own session (POSIX) so its whole tree can be signalled at once."""
    output = subprocess.PIPE if capture_output else None
    if os.name == "nt":  # pragma: no cover - Windows
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=output,
            env=dict(env),
            cwd=cwd,
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
        )
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=output,
        stderr=output,
        env=dict(env),
        cwd=cwd,
        pass_fds=tuple(pass_fds),
        start_new_session=True,
    )


def signal_tree(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the worker's process group: grandchildren go with it."""
    if os.name == "nt":  # pragma: no cover - Windows has no process groups to signal
        if sig == signal.SIGTERM:
            proc.terminate()
        else:
            subprocess.run(
                ["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False
            )
        return
    # the group id is the worker's pid (start_new_session); while the worker is unreaped or
    # any member remains, that id cannot belong to anyone else
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen[bytes], *, grace_s: float) -> int:
    """Wait ``grace_s`` for the worker to exit, then terminate, then kill; always reap."""
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.debug("worker pid %d ignored the shutdown request; terminating it", proc.pid)
        signal_tree(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            log.debug("worker pid %d ignored SIGTERM; killing it", proc.pid)
            signal_tree(proc, SIGKILL)
            proc.wait()
    signal_tree(proc, SIGKILL)  # whatever the worker left running in its group
    return proc.returncode


def describe_exit(code: int | None) -> str:
    """Say how a process ended, in words."""
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class OutputPump:
    """Forward the worker's stdout and stderr to logging line by line; keep the stderr tail."""

    def __init__(self, proc: subprocess.Popen[bytes], logger: logging.Logger) -> None:
        self._logger = logger
        self._tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._threads = [
            threading.Thread(
                target=self._pump, args=(stream, level, keep), name=f"{logger.name}.{label}",
                daemon=True,
            )
            for stream, level, keep, label in (
                (proc.stdout, logging.INFO, False, "stdout"),
                (proc.stderr, logging.WARNING, True, "stderr"),
            )
            if stream is not None
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: IO[bytes], level: int, keep: bool) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if keep:
                    self._tail.append(line)
                self._logger.log(level, "%s", line)

    def join(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Wait for the pipes to drain (a grandchild holding them open stops the wait)."""
        for thread in self._threads:
            thread.join(timeout_s)

    def stderr_tail(self) -> str:
        """The last lines the worker wrote to stderr."""
        return "\n".join(self._tail)
