"""``Environment`` (from a spec, run through a worker) and ``EnvironmentManager`` (original API)."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from cema.activation import activated_environ
from cema.errors import EnvError, SpecError, WorkerError
from cema.model.spec import (
    EnvSpec,
    ProjectSpec,
    check_env_name,
    current_platform,
    env_from_dict,
    project_from_dict,
)
from cema.project import Project, SyncMode
from cema.store import Store, venv_python

if TYPE_CHECKING:
    from cema.runtime import ModuleProxy, Worker

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
#: the original API's keyword names (its users pass them by keyword)
CAMEL_KEYWORDS = {
    "additionalInstallCommands": "additional_install_commands",
    "additionalActivateCommands": "additional_activate_commands",
    "forceExternal": "force_external",
    "logOutputInThread": "log_output_in_thread",
    "popenKwargs": "popen_kwargs",
}


def camel_keywords(method: Callable[P, R]) -> Callable[P, R]:
    """Let ``method`` also take its keywords under their original camelCase names."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for old, new in CAMEL_KEYWORDS.items():
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{method.__name__}() got both {old!r} and {new!r}")
                kwargs[new] = kwargs.pop(old)
        return method(*args, **kwargs)

    return wrapper


#: the original API's ``Popen`` defaults for ``execute_commands``: read ``process.stdout``
POPEN_DEFAULTS: Mapping[str, Any] = {
    "stdout": subprocess.PIPE,
    "stderr": subprocess.STDOUT,
    "stdin": subprocess.DEVNULL,
    "encoding": "utf-8",
    "errors": "replace",
    "bufsize": 1,
}


class Installer(Protocol):
    """What grows an env made by the original API (``EnvironmentManager`` is one)."""

    def install(
        self,
        name: str,
        dependencies: Mapping[str, Any],
        additional_install_commands: ActivateCommands | None = None,
    ) -> Environment:
        """Add ``dependencies`` to env ``name`` and sync it."""
        ...


class Environment:
    """A synced env (or the running interpreter, for the main env) that can run code."""

    def __init__(
        self,
        name: str,
        prefix: Path | None,
        *,
        kind: str = "conda",
        variables: Sequence[tuple[str, str]] = (),
        project: Project | None = None,
    ) -> None:
        self.name = name
        self.prefix = prefix
        self.kind = kind
        self.variables = tuple(variables)
        self.project = project
        #: extra variables for every process of this env (the manager's proxies)
        self.extra_environ: dict[str, str] = {}
        #: the ``EnvironmentManager`` that made it, if any (``install`` goes through it); seen
        #: only through the ``Installer`` protocol: the core knows no manager
        self.manager: Installer | None = None
        self._worker: Worker | None = None
        self._pin: Path | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = self.prefix or "this process"
        return f"<Environment {self.name!r} at {where}{' (launched)' if self.launched() else ''}>"

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def main(cls) -> Environment:
        """The environment of the running interpreter: calls run in this process."""
        return cls("main", None, kind="main")

    @property
    def is_main(self) -> bool:
        """True for the running interpreter's own environment."""
        return self.prefix is None

    @classmethod
    def from_spec(
        cls,
        spec_or_path: ProjectSpec | Mapping[str, Any] | Path | str,
        *,
        name: str | None = None,
        store: Store | Path | str | None = None,
        mode: SyncMode = "auto",
    ) -> Environment:
        """Reconcile one env through lock, plan and sync, and return it (not yet launched).

        ``spec_or_path`` is a ``cema.yaml`` path (or its folder), a project dict, a
        ``ProjectSpec``, or one env's dict in the original shape (then ``name`` is required).
        """
        if isinstance(spec_or_path, ProjectSpec):
            project = Project(spec_or_path, store=store)
        elif isinstance(spec_or_path, Mapping) and "environments" in spec_or_path:
            project = Project(project_from_dict(dict(spec_or_path)), store=store)
        elif isinstance(spec_or_path, Mapping):
            if name is None:
                raise SpecError(
                    "a single environment's dict needs a name.",
                    hint="pass name=... to Environment.from_spec.",
                )
            # one env in code: a project of its own with no file, its lock kept in the store
            platform = current_platform()
            env = env_from_dict(check_env_name(name), spec_or_path, platforms=[platform])
            spec = ProjectSpec(path=None, environments={name: env}, platforms=(platform,))
            project = Project(spec, store=store)
        else:
            project = Project.load(spec_or_path, store=store)
        if name is None:
            if len(project.spec.environments) != 1:
                raise SpecError(
                    f"{project.spec.path} declares {len(project.spec.environments)} environments.",
                    hint="pass name=... to say which one.",
                )
            name = next(iter(project.spec.environments))
        return cls.from_project(project, name, mode=mode)

    @classmethod
    def from_project(cls, project: Project, name: str, *, mode: SyncMode = "auto") -> Environment:
        """Sync env ``name`` of ``project`` and return it."""
        env_spec = project.spec.env(name)
        result = project.sync(names=[name], mode=mode)
        prefix = result.prefixes[name]
        return cls(
            name,
            prefix,
            kind=_kind_of(project, prefix, env_spec),
            variables=env_spec.variables,
            project=project,
        )

    # -- activation ----------------------------------------------------------------------------

    def environ(
        self,
        base: Mapping[str, str] | None = None,
        *,
        additional_activate_commands: ActivateCommands | None = None,
    ) -> dict[str, str]:
        """The variables of the activated env (PATH, CONDA_PREFIX, activate.d, spec variables).

        ``additional_activate_commands`` (``{"all"|"linux"|"mac"|"windows": [commands]}``) run
        in a shell on top of the activation; the variables they export are kept.
        """
        if self.prefix is None:
            env = dict(os.environ if base is None else base)
        else:
            env = activated_environ(
                self.prefix, kind=self.kind, name=self.name, variables=self.variables, base=base
            )
        env.update(self.extra_environ)
        commands = commands_for_this_os(additional_activate_commands)
        return environ_after(commands, env) if commands else env

    @property
    def python(self) -> Path:
        """The env's interpreter."""
        return Path(sys.executable) if self.prefix is None else venv_python(self.prefix)

    # -- worker ----------------------------------------------------------------------------------

    def launched(self) -> bool:
        """True while a worker is running for this env (always True for the main env)."""
        return self.is_main or (self._worker is not None and self._worker.alive())

    @camel_keywords
    def launch(
        self,
        additional_activate_commands: ActivateCommands | None = None,
        log_output_in_thread: bool = True,
    ) -> Environment:
        """Start the env's worker (idempotent); usable as ``with env.launch(): ...``."""
        if self.is_main:
            return self
        with self._lock:
            if self._worker is None or not self._worker.alive():
                from cema.runtime import Worker

                if self._worker is not None:  # dead: reap it and remove its socket folder now
                    self._worker.close()
                    self._unpin()

                self._worker = Worker.start(
                    python=self.python,
                    env=self.environ(additional_activate_commands=additional_activate_commands),
                    name=self.name,
                    log_output_in_thread=log_output_in_thread,
                )
                # `cema gc` and `--prune` never remove a prefix a worker runs in
                self._pin = self._store().pin(self.prefix.name) if self.prefix else None
        return self

    def _store(self) -> Store:
        assert self.prefix is not None
        return self.project.store if self.project else Store(self.prefix.parent.parent)

    def _unpin(self) -> None:
        if self._pin is not None:
            Store.unpin(self._pin)
            self._pin = None

    def _require_worker(self) -> Worker:
        if self._worker is None:
            raise WorkerError(
                f"environment {self.name!r} is not launched.", hint="call env.launch() first."
            )
        return self._worker

    def import_module(self, module: str | Path) -> ModuleProxy | ModuleType:
        """A proxy whose functions run in the env (the module itself, for the main env)."""
        if self.is_main:
            return _import_locally(str(module))
        return self._require_worker().import_module(str(module))

    def execute(
        self,
        module: str | Path,
        function: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``module.function(*args, **kwargs)`` in the env and return its result."""
        if self.is_main:
            return getattr(_import_locally(str(module)), function)(*args, **dict(kwargs or {}))
        return self._require_worker().call(
            str(module), function, tuple(args), dict(kwargs or {}), timeout=timeout
        )

    @camel_keywords
    def execute_commands(
        self,
        commands: Sequence[str] | str | ActivateCommands,
        additional_activate_commands: ActivateCommands | None = None,
        popen_kwargs: Mapping[str, Any] | None = None,
    ) -> subprocess.Popen[Any]:
        """Run shell commands (one after the other, stopping at the first failure) in the env.

        As in the original API, the output is piped (``process.stdout`` yields text lines, stderr
        merged in) unless ``popen_kwargs`` says otherwise; an ``env`` there is activated too.
        """
        if isinstance(commands, Mapping):  # the original {"all"|"linux"|...: [commands]} form
            commands = commands_for_this_os(commands)
        script = [commands] if isinstance(commands, str) else list(commands)
        kwargs = {**POPEN_DEFAULTS, **(popen_kwargs or {})}
        kwargs["env"] = self.environ(
            kwargs.get("env"), additional_activate_commands=additional_activate_commands
        )
        return subprocess.Popen(shell_argv(script), **kwargs)

    @camel_keywords
    def install(
        self,
        dependencies: Mapping[str, Any],
        additional_install_commands: ActivateCommands | None = None,
    ) -> Environment:
        """Grow this env (made by an ``EnvironmentManager``) by ``dependencies``.

        The new content is a new prefix (an ``Update``); a running worker keeps the prefix it
        started in until it is relaunched.
        """
        if self.manager is None:
            raise EnvError(
                f"environment {self.name!r} was not made by an EnvironmentManager.",
                hint="add the dependencies to its cema.yaml and sync again.",
            )
        return self.manager.install(self.name, dependencies, additional_install_commands)

    def exit(self) -> None:
        """Stop the worker (ask, then terminate, then kill); safe to call twice."""
        with self._lock:
            worker, self._worker = self._worker, None
            self._unpin()
        if worker is not None:
            worker.close()

    def __enter__(self) -> Environment:
        return self.launch()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.exit()

    # the original camelCase API
    importModule = import_module
    executeCommands = execute_commands


def _import_locally(module: str) -> ModuleType:
    path = Path(module)
    if path.suffix == ".py":
        resolved = path.resolve()
        key = f"cema_main_{abs(hash(str(resolved)))}"
        if key in sys.modules:
            return sys.modules[key]
        spec = importlib.util.spec_from_file_location(key, resolved)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {resolved}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
        return mod
    return importlib.import_module(module)


def _kind_of(project: Project, prefix: Path, env_spec: EnvSpec) -> str:
    receipt = project.store.receipt(prefix.name)
    return receipt.kind if receipt else env_spec.resolved_kind


ActivateCommands = Mapping[str, Sequence[str]]


def commands_for_this_os(commands: ActivateCommands | None) -> list[str]:
    """The ``all`` commands, then those for this OS (``linux``, ``mac`` or ``windows``)."""
    if not commands:
        return []
    unknown = set(commands) - {"all", "linux", "mac", "windows"}
    if unknown:
        raise SpecError(
            f"unknown command key(s) {', '.join(sorted(unknown))}",
            hint="use 'all', 'linux', 'mac' or 'windows'.",
        )
    family = {"linux": "linux", "darwin": "mac", "win32": "windows"}.get(sys.platform, "linux")
    return [*commands.get("all", ()), *commands.get(family, ())]


def shell_argv(commands: Sequence[str]) -> list[str]:
    """Run ``commands`` in order in the platform's shell, stopping at the first failure."""
    if sys.platform == "win32":
        return ["cmd.exe", "/d", "/c", " && ".join(commands)]
    return ["/bin/sh", "-c", "set -e\n" + "\n".join(commands)]


def environ_after(commands: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    """The environment once ``commands`` ran in a shell started with ``env``."""
    from cema import _proc

    dump = "import json, os, sys; sys.stdout.write(chr(10) + json.dumps(dict(os.environ)))"
    out = _proc.run(
        shell_argv([*commands, f'"{sys.executable}" -c "{dump}"']),
        what="the additional activate commands",
        env=env,
        hint="fix the commands in additional_activate_commands.",
    )
    result: dict[str, str] = json.loads(out.stdout.rstrip().splitlines()[-1])
    return result


__all__ = [
    "CAMEL_KEYWORDS",
    "POPEN_DEFAULTS",
    "ActivateCommands",
    "Environment",
    "Installer",
    "camel_keywords",
    "commands_for_this_os",
    "environ_after",
    "shell_argv",
]
