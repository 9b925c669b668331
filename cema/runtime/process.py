"""The worker's process, beyond spawning and stopping (``cema._proc``): output pump, exit words."""

from __future__ import annotations

import collections
import logging
import signal
import subprocess
import threading
from typing import IO

#: stderr lines kept for crash messages
STDERR_TAIL_LINES = 50
#: how long to wait for the output pipes to drain once the process is gone
DRAIN_TIMEOUT_S = 2.0


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
                target=self._pump,
                args=(stream, level, keep),
                name=f"{logger.name}.{label}",
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
