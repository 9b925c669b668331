"""The whole Cema exception hierarchy: every error a user can see is a ``CemaError``."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any


def _rebuild(cls: type[CemaError], args: tuple[Any, ...], state: dict[str, Any]) -> CemaError:
    """Unpickle a Cema error without calling its keyword-only ``__init__``."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class CemaError(Exception):
    """Base of every Cema error; ``str()`` is a complete sentence, ``hint`` an optional fix."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # every error crosses processes intact (workers, Dask): attributes included
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class SpecError(CemaError):
    """``cema.yaml`` (or a spec dict) is malformed or invalid."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = []
        if file is not None:
            where.append(str(file) + (f":{line}" if line is not None else ""))
        if key:
            where.append(f"at {key}")
        full = f"{', '.join(where)}: {message}" if where else message
        super().__init__(full, hint=hint)
        self.file = file
        self.line = line
        self.key = key
        self.reason = message


class LockError(CemaError):
    """``cema.lock`` is missing, unreadable, or does not match the spec."""


class StaleLockError(LockError):
    """The lock was resolved from a different spec than the current ``cema.yaml``."""


class SolveError(LockError):
    """A spec could not be resolved to packages."""


class EnvError(CemaError):
    """Something is wrong with a named environment."""


class EnvNotFoundError(EnvError):
    """No environment of that name is declared or built."""


class EnvBusyError(EnvError):
    """Another process holds the environment's prefix lock for too long."""


class EngineError(CemaError):
    """The engine could not build or change a prefix."""


class EngineUnavailableError(EngineError):
    """The requested engine (or a tool it needs) is not available on this machine."""


class CommandFailedError(EngineError):
    """A subprocess exited with a non-zero status; carries the tail of its output."""

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None = None,
        output_tail: str = "",
        hint: str | None = None,
    ) -> None:
        full = message + (f"\n{output_tail.rstrip()}" if output_tail.strip() else "")
        super().__init__(full, hint=hint)
        self.returncode = returncode
        self.output_tail = output_tail


class UnreadableFileError(OSError):
    """A file Cema will not read: not a regular file, too large, or not UTF-8 text.

    Raised by ``cema._fs.read_capped``; an ``OSError`` so that best-effort readers skip it
    like any unreadable file, and each caller turns it into its own ``CemaError``.
    """

    def __init__(self, reason: str, path: Path | str, *, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.reason = reason
        self.path = path
        self.line = line


class WorkerError(CemaError):
    """Base for errors of the worker runtime."""


class WorkerStartError(WorkerError):
    """The worker process did not start or did not complete the handshake."""


class WorkerCrashedError(WorkerError):
    """The worker process died; carries its exit code and the tail of its stderr."""

    def __init__(
        self,
        message: str,
        *,
        exitcode: int | None = None,
        stderr_tail: str = "",
        hint: str | None = None,
    ) -> None:
        full = message + (f"\n{stderr_tail.rstrip()}" if stderr_tail.strip() else "")
        super().__init__(full, hint=hint)
        self.exitcode = exitcode
        self.stderr_tail = stderr_tail


class WorkerTimeoutError(WorkerError, TimeoutError):
    """A call did not finish within its ``timeout``."""


class ProtocolError(WorkerError):
    """The host and worker disagree on the wire protocol, or a message could not be decoded."""


class RemoteError(WorkerError):
    """An exception raised in the worker whose class the host cannot rebuild."""

    def __init__(
        self,
        message: str,
        *,
        remote_type: str,
        remote_traceback: str,
        hint: str | None = None,
    ) -> None:
        full = f"{remote_type}: {message}"
        if remote_traceback:
            full += f"\n\nRemote traceback:\n{remote_traceback.rstrip()}"
        super().__init__(full, hint=hint)
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = remote_traceback


class DiskFullError(EngineError):
    """The disk filled up (ENOSPC) while installing; names a folder on that disk."""

    #: how rattler and uv say it (Rust's ``io::Error`` text, or the errno)
    SIGNS = ("No space left on device", "os error 28")

    def __init__(self, where: Path | str, *, installing: str) -> None:
        super().__init__(
            f"the disk holding {where} is full (No space left on device) while installing"
            f" {installing}.",
            hint="free some space on it, or use `--store` on a bigger disk; nothing was published.",
        )
        self.where = where

    @classmethod
    def seen_in(cls, text: str) -> bool:
        """Whether an error text says that a disk is full."""
        return any(sign in text for sign in cls.SIGNS)


__all__ = [
    "CemaError",
    "CommandFailedError",
    "DiskFullError",
    "EngineError",
    "EngineUnavailableError",
    "EnvBusyError",
    "EnvError",
    "EnvNotFoundError",
    "LockError",
    "ProtocolError",
    "RemoteError",
    "SolveError",
    "SpecError",
    "StaleLockError",
    "UnreadableFileError",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerStartError",
    "WorkerTimeoutError",
]
