"""``Environment`` (from a spec, run through a worker) and ``EnvironmentManager`` (original API)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

import yaml

from cema.activation import activated_environ
from cema.engines.uv import venv_python
from cema.errors import EnvNotFoundError, SpecError, WorkerError
from cema.project import Project, SyncMode
from cema.spec import (
    DEFAULT_CHANNELS,
    EnvSpec,
    ProjectSpec,
    check_env_name,
    current_platform,
    dump_project,
    env_from_dict,
    load_project,
    project_from_dict,
)
from cema.store import Store

if TYPE_CHECKING:
    from cema.runtime import ModuleProxy, Worker

log = logging.getLogger(__name__)
Dependencies = Mapping[str, Any]


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
        self._worker: Worker | None = None
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
            store_obj = store if isinstance(store, Store) else Store(store)
            project = _inline_project(store_obj, name, spec_or_path)
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

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The variables of the activated env (PATH, CONDA_PREFIX, activate.d, spec variables)."""
        if self.prefix is None:
            return dict(os.environ if base is None else base)
        return activated_environ(
            self.prefix, kind=self.kind, name=self.name, variables=self.variables, base=base
        )

    @property
    def python(self) -> Path:
        """The env's interpreter."""
        return Path(sys.executable) if self.prefix is None else venv_python(self.prefix)

    # -- worker ----------------------------------------------------------------------------------

    def launched(self) -> bool:
        """True while a worker is running for this env (always True for the main env)."""
        return self.is_main or (self._worker is not None and self._worker.alive())

    def launch(self, *, log_output_in_thread: bool = True) -> Environment:
        """Start the env's worker (idempotent); usable as ``with env.launch(): ...``."""
        if self.is_main:
            return self
        with self._lock:
            if self._worker is None or not self._worker.alive():
                from cema.runtime import Worker

                self._worker = Worker.start(
                    python=self.python,
                    env=self.environ(),
                    name=self.name,
                    log_output_in_thread=log_output_in_thread,
                )
        return self

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

    def execute_commands(
        self, commands: Sequence[str] | str, *, popen_kwargs: Mapping[str, Any] | None = None
    ) -> subprocess.Popen[Any]:
        """Run shell commands (one after the other, stopping at the first failure) in the env."""
        script = [commands] if isinstance(commands, str) else list(commands)
        kwargs = dict(popen_kwargs or {})
        kwargs.setdefault("env", self.environ())
        if sys.platform == "win32":
            argv = ["cmd.exe", "/d", "/c", " && ".join(script)]
        else:
            argv = ["/bin/sh", "-c", "set -e\n" + "\n".join(script)]
        return subprocess.Popen(argv, **kwargs)

    def exit(self) -> None:
        """Stop the worker (ask, then terminate, then kill); safe to call twice."""
        with self._lock:
            worker, self._worker = self._worker, None
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


def _inline_project(store: Store, name: str, dependencies: Mapping[str, Any]) -> Project:
    """A one-env project kept inside the store, for envs declared as a dict in code."""
    check_env_name(name)
    folder = store.root / "inline" / name
    manager = EnvironmentManager(folder, store=store)
    manager._write_env(name, dependencies)
    return manager.project


class EnvironmentManager:
    """The original API: named envs kept in ``root`` (its own ``cema.yaml`` and ``cema.lock``)."""

    def __init__(self, root: Path | str, *, store: Store | Path | str | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self.store = store if isinstance(store, Store) else Store(store or self.root)
        self._envs: dict[str, Environment] = {}

    @property
    def spec_path(self) -> Path:
        """The manager's own ``cema.yaml``."""
        return self.root / "cema.yaml"

    @property
    def project(self) -> Project:
        """The manager's project (its ``cema.yaml`` and ``cema.lock`` in ``root``)."""
        if self.spec_path.exists():
            spec = load_project(self.spec_path)
        else:
            spec = ProjectSpec(path=self.spec_path, platforms=(current_platform(),))
        return Project(spec, store=self.store)

    def _write_env(self, name: str, dependencies: Dependencies) -> EnvSpec:
        check_env_name(name)
        deps = dict(dependencies)
        channels = tuple(deps.get("channels") or DEFAULT_CHANNELS)
        env = env_from_dict(name, deps, channels=channels, platforms=[current_platform()])
        current = self.project.spec
        envs = {**current.environments, name: env}
        spec = ProjectSpec(
            path=self.spec_path,
            environments=envs,
            channels=DEFAULT_CHANNELS,
            platforms=(current_platform(),),
        )
        text = dump_project(spec)
        project_from_dict(yaml.safe_load(text))  # never write an invalid file
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.spec_path.with_name(f".cema.yaml.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.spec_path)
        return env

    def create(
        self,
        name: str,
        dependencies: Dependencies | None = None,
        *,
        force: bool = False,
        force_external: bool = False,
    ) -> Environment:
        """Declare, lock and sync env ``name``; the main env when this interpreter suffices."""
        dependencies = dict(dependencies or {})
        if not (force or force_external) and main_env_satisfies(dependencies):
            log.info("the running interpreter satisfies %s: using the main environment", name)
            return Environment.main()
        self._write_env(name, dependencies)
        env = Environment.from_project(self.project, name)
        self._envs[name] = env
        return env

    def environment_exists(self, name: str) -> bool:
        """True when env ``name`` is declared here and synced."""
        try:
            self.load(name)
        except (EnvNotFoundError, SpecError):
            return False
        return True

    def load(self, name: str) -> Environment:
        """The env ``name`` as last synced (``EnvNotFoundError`` if it never was)."""
        if name in self._envs:
            return self._envs[name]
        if not self.spec_path.exists():
            raise EnvNotFoundError(
                f"no environment named {name!r} in {self.root}.",
                hint=f"create it with manager.create({name!r}, ...).",
            )
        project = self.project
        env_spec = project.spec.env(name)
        prefix = project.prefix(name)
        env = Environment(
            name,
            prefix,
            kind=_kind_of(project, prefix, env_spec),
            variables=env_spec.variables,
            project=project,
        )
        self._envs[name] = env
        return env

    def exit(self) -> None:
        """Stop every worker this manager launched."""
        for env in self._envs.values():
            env.exit()

    environmentExists = environment_exists


def main_env_satisfies(dependencies: Dependencies) -> bool:
    """True when the running interpreter already has what ``dependencies`` asks for.

    Versions are matched for real (PEP 440 specifiers, markers evaluated), not as strings.
    """
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    from cema.engines.uv import version_request

    if dependencies.get("conda"):
        return False
    python = dependencies.get("python")
    running = Version(".".join(map(str, sys.version_info[:3])))
    if python and running not in version_request(str(python)):
        return False
    for text in dependencies.get("pip", ()):
        try:
            req = Requirement(str(text))
        except InvalidRequirement:
            return False
        if req.marker is not None and not req.marker.evaluate():
            continue
        if req.url:
            return False
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            return False
        if not SpecifierSet(str(req.specifier)).contains(installed, prereleases=True):
            return False
    return True
