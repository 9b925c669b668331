"""``ExternalEnvironment``: an env of the original API, run through a worker process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from cema._internal.command_generator import commands_for_platform, script_argv
from cema._internal.exceptions import ExecutionException
from cema.environment import POPEN_DEFAULTS, Environment
from cema.errors import RemoteError, WorkerError

if TYPE_CHECKING:
    from cema._internal.command_generator import Commands
    from cema.runtime import ModuleProxy

__all__ = ["ExternalEnvironment", "OriginalManager"]


class OriginalManager(Protocol):
    """What an env of the original API asks of its manager (``cema.environment_manager``).

    A protocol, so that the envs never import the manager module, not even for typing.
    """

    def envPath(self, name: str) -> Path:
        """``<condaPath>/envs/<name>``."""

    def executeCommands(
        self,
        environmentName: str | None,
        commands: Commands,
        additionalActivateCommands: Commands | None = None,
        popenKwargs: Mapping[str, Any] | None = None,
    ) -> subprocess.Popen[Any]:
        """Run ``commands`` in the env ``environmentName``."""

    def install(
        self,
        environmentName: str | None,
        dependencies: Mapping[str, Any],
        additionalInstallCommands: Commands | None = None,
    ) -> list[str]:
        """Add ``dependencies`` to the env ``environmentName``."""

    def _forget(self, environment: Environment) -> None:
        """Drop ``environment`` from the manager's ``environments``."""


def _missing_file(modulePath: str | Path) -> None:
    path = str(modulePath)
    if path.endswith(".py") and not Path(path).is_file():
        raise ModuleNotFoundError(f"No module named {path!r} (no such file).", name=path)


class ExternalEnvironment(Environment):
    """A conda env in ``<condaPath>/envs/<name>`` (a link to its content-addressed prefix)."""

    def __init__(
        self,
        name: str,
        environmentManager: OriginalManager,
        *,
        prefix: Path | None = None,
        kind: str = "conda",
        variables: Sequence[tuple[str, str]] = (),
    ) -> None:
        #: ``<condaPath>/envs/<name>`` in the manager's root when this env was made or found
        self.envLink = environmentManager.envPath(name)
        super().__init__(name, prefix or self.envLink.resolve(), kind=kind, variables=variables)
        self.environmentManager = environmentManager

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The worker's process while launched, else None."""
        worker = self._worker
        return worker.process if worker is not None and worker.alive() else None

    def launch(  # type: ignore[override]
        self,
        additionalActivateCommands: Commands | None = None,
        logOutputInThread: bool = True,
    ) -> None:
        """Start the worker (a second call while it runs does nothing)."""
        extra = {
            "all": commands_for_platform(additionalActivateCommands, "additionalActivateCommands")
        }
        super().launch(
            additional_activate_commands=extra if extra["all"] else None,
            log_output_in_thread=logOutputInThread,
        )
        if self.prefix == self.envLink:
            self._drop_pin()

    def _drop_pin(self) -> None:
        """An env micromamba made (``envs/<name>`` a folder, not Cema's link) is in no Cema
        store: no ``cema gc`` can remove it, so its root gets no ``pins/`` of Cema's."""
        with self._lock:
            pin, self._pin = self._pin, None
        if pin is not None:
            pin.unlink(missing_ok=True)
            for folder in (pin.parent, pin.parent.parent):  # pins/<name>, pins: only if empty
                with contextlib.suppress(OSError):
                    folder.rmdir()

    def _worker_or_raise(self) -> None:
        if not self.launched():
            raise WorkerError(
                f"environment {self.name!r} is not launched: call env.launch() first.",
                hint="env.launch() starts its worker; env.exit() stops it.",
            )

    def importModule(self, modulePath: str | Path) -> ModuleProxy:
        """A proxy whose functions run in the env."""
        self._worker_or_raise()
        _missing_file(modulePath)
        return cast("ModuleProxy", super().import_module(modulePath))

    import_module = importModule  # type: ignore[assignment]

    def execute(  # type: ignore[override]
        self,
        modulePath: str | Path,
        function: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run ``modulePath.function(*args, **kwargs)`` in the env and return the result."""
        self._worker_or_raise()
        _missing_file(modulePath)
        assert self._worker is not None
        if function not in self._worker.functions(str(modulePath)):
            message = f"Module {modulePath} has no function {function}."
            raise ExecutionException({"exception": message, "traceback": []})
        try:
            return super().execute(modulePath, function, args, kwargs)
        except RemoteError as exc:
            lines = exc.remote_traceback.splitlines()
            raise ExecutionException(
                {"exception": f"{exc.remote_type}: {exc.remote_message}", "traceback": lines}
            ) from exc
        except WorkerError:
            raise
        except Exception as exc:
            text = getattr(exc, "__cema_remote_traceback__", "")
            raise ExecutionException(
                {"exception": f"{type(exc).__name__}: {exc}", "traceback": text.splitlines()}
            ) from exc

    def executeCommands(
        self,
        commands: Commands,
        additionalActivateCommands: Commands | None = None,
        popenKwargs: Mapping[str, Any] | None = None,
    ) -> subprocess.Popen[Any]:
        """Run ``commands`` with bash (PowerShell on Windows) in the activated env."""
        return self.environmentManager.executeCommands(
            self.name, commands, additionalActivateCommands, popenKwargs
        )

    execute_commands = executeCommands  # type: ignore[assignment]

    def popen(
        self,
        commands: Commands,
        additionalActivateCommands: Commands | None,
        popenKwargs: Mapping[str, Any] | None,
    ) -> subprocess.Popen[Any]:
        """The ``Popen`` of ``commands`` in this env, with the original defaults."""
        script = commands_for_platform(commands)
        extra = commands_for_platform(additionalActivateCommands, "additionalActivateCommands")
        kwargs = {**POPEN_DEFAULTS, **(popenKwargs or {})}
        kwargs["env"] = self.environ(
            kwargs.get("env"), additional_activate_commands={"all": extra} if extra else None
        )
        return subprocess.Popen(script_argv(script), **kwargs)

    def install(  # type: ignore[override]
        self, dependencies: Mapping[str, Any], additionalInstallCommands: Commands | None = None
    ) -> list[str]:
        """Add ``dependencies``; returns the output lines."""
        return self.environmentManager.install(self.name, dependencies, additionalInstallCommands)

    def exit(self) -> None:
        """Stop the worker and every child it started; the manager forgets this env.

        The stop ladder ends the worker's process group; what left the group (a child started
        in a new session, say) is killed here, as the original killed every descendant.
        """
        process = self.process
        if process is not None and os.name != "nt":  # Windows: taskkill /T ends the whole tree
            for pid in _descendants_outside_group(process.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        super().exit()
        self.environmentManager._forget(self)


def _descendants_outside_group(root: int) -> list[int]:
    """The pids below ``root`` (children, theirs, ...) that are not in ``root``'s group."""
    table = _process_table()
    found: list[int] = []
    todo = [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, group) in table.items():
            if ppid == parent:
                todo.append(pid)
                if group != root:
                    found.append(pid)
    return found


def _process_table() -> dict[int, tuple[int, int]]:
    """pid → (parent pid, process group), from ``/proc`` (Linux) or ``ps`` (macOS)."""
    table: dict[int, tuple[int, int]] = {}
    proc = Path("/proc")
    if (proc / "self" / "stat").is_file():
        for entry in proc.iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:  # gone meanwhile
                    continue
                table[int(entry.name)] = (int(fields[1]), int(fields[2]))
        return table
    from cema import _proc

    out = _proc.run(["ps", "-A", "-o", "pid=,ppid=,pgid="], what="listing processes").stdout
    for line in out.splitlines():
        pid, ppid, group = (int(word) for word in line.split())
        table[pid] = (ppid, group)
    return table
