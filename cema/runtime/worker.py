"""``Worker``: a running executor server in an env's python, and calls into it from any thread."""

from __future__ import annotations

import logging
import os
import subprocess
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from cema._internal import protocol
from cema.errors import ProtocolError
from cema.runtime.launch import launch
from cema.runtime.proxy import ModuleProxy, module_key
from cema.runtime.session import Session

#: how long ``Worker.start`` waits for the handshake by default
LAUNCH_TIMEOUT_S = 60.0
#: after the shutdown request, how long the worker gets to exit by itself
SHUTDOWN_GRACE_S = 5.0

log = logging.getLogger(__name__)


class Worker:
    """A running executor server in an env's python; any number of threads may call it.

    - Concurrency: each call runs in a thread of the worker; a call that runs longer than a few
      milliseconds lets the next one start beside it, so a long call never blocks the others.
    - Timeouts: a call that exceeds its ``timeout`` raises ``WorkerTimeoutError`` and *stops the
      worker* (a running Python call cannot be interrupted); every other pending call and every
      later one raises ``WorkerCrashedError`` saying so, until a new worker is started.
    - Crashes: a worker that dies fails every pending and later call with
      ``WorkerCrashedError`` (exit code, stderr tail); nothing hangs, nothing returns ``None``.
    - Data: arguments and results are pickled (protocol 5); buffers of 1 MiB and more (numpy
      arrays) travel through shared memory, zero copy on the receiving side.
    - Lifecycle: ``close()`` (or ``with``) asks, terminates, then kills the worker's process
      group; workers still open at interpreter exit are closed then; a worker whose host dies
      exits by itself.
    """

    def __init__(self, name: str, session: Session, info: Mapping[str, Any]) -> None:
        self.name = name
        self.pid: int = session.proc.pid
        #: the socket the worker accepts authenticated connections on
        self.address: str = str(info.get("address", ""))
        #: the worker's Python version, as ``"3.12.1"``
        self.python_version: str = str(info.get("python", ""))
        self._session = session
        self._finalizer = weakref.finalize(self, session.close, SHUTDOWN_GRACE_S)

    @classmethod
    def start(
        cls,
        *,
        python: Path,
        env: Mapping[str, str],
        name: str,
        cwd: Path | None = None,
        log_output_in_thread: bool = True,
        start_timeout_s: float = LAUNCH_TIMEOUT_S,
    ) -> Worker:
        """Start the executor server under ``python`` with exactly ``env`` as its environment.

        Returns once the authenticated handshake is done. With ``log_output_in_thread`` the
        worker's stdout and stderr go line by line to ``logging.getLogger("cema.worker.<name>")``
        (INFO and WARNING); without it they are the host's own, and crash messages carry no
        stderr tail.
        """
        launched = launch(
            python=python,
            env=env,
            name=name,
            cwd=cwd,
            capture_output=log_output_in_thread,
            timeout_s=start_timeout_s,
        )
        info = dict(launched.hello)
        info["address"] = launched.address
        if info.get("protocol") != protocol.PROTOCOL_VERSION:  # launch checks; belt and braces
            raise ProtocolError(f"Worker {name!r} speaks protocol {info.get('protocol')}.")
        return cls(name, Session(name, launched), info)

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The worker's process (read-only; ``close()`` is how to stop it)."""
        return self._session.proc

    def alive(self) -> bool:
        """Whether the worker process runs and takes calls."""
        session = self._session
        return session.death is None and session.stop_reason is None and session.proc.poll() is None

    def call(
        self,
        module: str | os.PathLike[str],
        function: str,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``module.function(*args, **kwargs)`` in the worker and return its result.

        ``module`` is a ``.py`` path (resolved against the host's working directory) or an
        importable module name. An exception in the worker is raised here as its own type with
        the remote traceback attached (``__cema_remote_traceback__`` and a note), or as
        ``RemoteError`` when the host cannot rebuild it.
        """
        return self.call_resolved(
            module_key(module), function, tuple(args), dict(kwargs or {}), timeout=timeout
        )

    def call_resolved(
        self,
        key: str,
        function: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout: float | None,
    ) -> Any:
        """``call`` for a module already passed through ``module_key`` (proxies resolve once)."""
        return self._session.request(
            protocol.CALL, (key, function, args, kwargs), what=None, timeout=timeout
        )

    def functions(self, module: str | os.PathLike[str]) -> list[str]:
        """The public functions of ``module`` (its ``__all__`` if it has one), imported there."""
        names = self._session.request(
            protocol.IMPORT, module_key(module), what=f"import {module}", timeout=None
        )
        return list(names)

    def import_module(
        self, module: str | os.PathLike[str], *, timeout: float | None = None
    ) -> ModuleProxy:
        """Import ``module`` in the worker and return a proxy whose attributes call into it."""
        return ModuleProxy(self, module, self.functions(module), timeout=timeout)

    def close(self, *, timeout_s: float = SHUTDOWN_GRACE_S) -> int | None:
        """Ask the worker to exit, then terminate, then kill its process group; idempotent.

        Returns the worker's exit code (negative: killed by that signal).
        """
        self._finalizer.detach()
        return self._session.close(timeout_s)

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "alive" if self.alive() else "stopped"
        return f"<Worker {self.name!r} pid={self.pid} python={self.python_version} {state}>"
