"""``EnvironmentManager``: the original imperative API, on the declarative core (one path)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from cema._fs import atomic_write, file_lock
from cema.environment import ActivateCommands, Environment, camel_keywords
from cema.errors import EnvNotFoundError, SpecError
from cema.model.spec import (
    DEFAULT_CHANNELS,
    Dependency,
    EnvSpec,
    ProjectSpec,
    check_env_name,
    conda_name,
    current_platform,
    dump_project,
    env_from_dict,
    load_project,
    project_from_dict,
)
from cema.project import Project
from cema.store import Store

log = logging.getLogger(__name__)
Dependencies = Mapping[str, Any]
PROXY_VARIABLES = {"http": "HTTP_PROXY", "https": "HTTPS_PROXY", "no": "NO_PROXY"}
# os.environ is process-wide: one manager at a time applies its proxies to it
_ENVIRON_LOCK = threading.RLock()
# create/install read, edit and write the root's cema.yaml, cema.lock and registration:
# one at a time per root, in this process (threads) and across processes (a file lock)
_ROOT_LOCKS: dict[Path, threading.Lock] = {}
_ROOT_LOCKS_GUARD = threading.Lock()


def _spec_of(name: str, dependencies: Dependencies, commands: ActivateCommands | None) -> EnvSpec:
    """An env spec from the original ``dependencies`` dict (validated like ``cema.yaml``)."""
    check_env_name(name)
    body = dict(dependencies)
    if commands:
        body["install_commands"] = {k: list(v) for k, v in commands.items()}
    channels = tuple(body.pop("channels", None) or DEFAULT_CHANNELS)
    if channels != DEFAULT_CHANNELS:
        body["channels"] = list(channels)
    return env_from_dict(name, body, channels=DEFAULT_CHANNELS, platforms=[current_platform()])


def _package_name(spec: str, *, pip: bool) -> str:
    """The package an entry is about: ``conda-forge::NumPy>=2`` → ``numpy``."""
    if pip:
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name

        return canonicalize_name(Requirement(spec).name)
    return conda_name(spec)


def _merged(env: EnvSpec, extra: EnvSpec) -> EnvSpec:
    """``env`` grown by ``extra``: new packages appended, a new entry for a package it already
    has replacing the old one (``install`` upgrades), a new python or channel taking over."""

    def merge(
        old: tuple[Dependency, ...], new: tuple[Dependency, ...], *, pip: bool
    ) -> tuple[Dependency, ...]:
        replacing = {_package_name(d.spec, pip=pip): d for d in new}
        named = set(replacing)
        out: list[Dependency] = []
        for dep in old:
            key = _package_name(dep.spec, pip=pip)
            if key not in named:
                out.append(dep)
            elif key in replacing:  # the first entry for it takes the new one's place
                out.append(replacing.pop(key))
        return (*out, *replacing.values())

    commands = dict(env.install_commands)
    for key, more in extra.install_commands:
        commands[key] = commands.get(key, ()) + more
    return replace(
        env,
        python=extra.python or env.python,
        conda=merge(env.conda, extra.conda, pip=False),
        pip=merge(env.pip, extra.pip, pip=True),
        channels=tuple(dict.fromkeys((*env.channels, *extra.channels)))
        if extra.own_channels
        else env.channels,
        own_channels=env.own_channels or extra.own_channels,
        install_commands=tuple(sorted(commands.items())),
    )


class EnvironmentManager:
    """Named envs kept in ``root``: its own ``cema.yaml`` and ``cema.lock``, and its store."""

    def __init__(self, root: Path | str, *, store: Store | Path | str | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self.store = store if isinstance(store, Store) else Store(store or self.root)
        self._envs: dict[str, Environment] = {}
        self._proxies: dict[str, str] = {}
        self._micromamba: Path | None = None

    def __repr__(self) -> str:
        return f"EnvironmentManager({str(self.root)!r})"

    # -- the project in root ---------------------------------------------------------------------

    @property
    def spec_path(self) -> Path:
        """The manager's own ``cema.yaml`` (readable by ``cema plan --project ROOT``)."""
        return self.root / "cema.yaml"

    @property
    def project(self) -> Project:
        """The manager's project, with its engine."""
        if self.spec_path.exists():
            spec = load_project(self.spec_path)
        else:
            spec = ProjectSpec(path=self.spec_path, platforms=(current_platform(),))
        engine: Any = None
        if self._micromamba is not None:
            from cema.engines.micromamba import MicromambaEngine

            engine = MicromambaEngine(binary=self._micromamba)
        return Project(spec, store=self.store, engine=engine)

    def _save(self, env: EnvSpec) -> None:
        """Put ``env`` into ``cema.yaml`` (validated, then written atomically)."""
        current = self.project.spec
        spec = ProjectSpec(
            path=self.spec_path,
            environments={**current.environments, env.name: env},
            channels=DEFAULT_CHANNELS,
            platforms=(current_platform(),),
            # named in the file, so `cema plan/list --project ROOT` read the manager's store
            store="." if self.store.root == self.root else str(self.store.root),
        )
        text = dump_project(spec)
        project_from_dict(yaml.safe_load(text))  # never write a file that does not load
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.spec_path, text)

    @contextlib.contextmanager
    def _editing(self) -> Iterator[None]:
        """Hold the root's lock while its spec, lock and envs change (never nested)."""
        with _ROOT_LOCKS_GUARD:
            local = _ROOT_LOCKS.setdefault(self.root, threading.Lock())
        with local:
            self.root.mkdir(parents=True, exist_ok=True)
            with file_lock(self.root / ".cema.yaml.lock"):
                yield

    @contextlib.contextmanager
    def _network(self) -> Iterator[None]:
        """The proxies, set in this process's environment while rattler and uv run."""
        if not self._proxies:
            yield
            return
        with _ENVIRON_LOCK:
            saved = {k: os.environ.get(k) for k in self._proxies}
            os.environ.update(self._proxies)
            try:
                yield
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value

    def _save_and_sync(self, env: EnvSpec) -> Environment:
        """Declare ``env`` and sync it; if that fails, ``cema.yaml`` is put back as it was."""
        try:
            before: str | None = self.spec_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            before = None
        self._save(env)
        try:
            return self._sync(env.name)
        except BaseException:
            if before is None:
                self.spec_path.unlink(missing_ok=True)
            else:
                atomic_write(self.spec_path, before)
            raise

    def _sync(self, name: str) -> Environment:
        with self._network():
            env = Environment.from_project(self.project, name)
        env.extra_environ.update(self._proxies)
        env.manager = self
        old = self._envs.get(name)
        if old is not None:  # the same object moves; a running worker keeps its old prefix
            old.prefix, old.kind, old.variables = env.prefix, env.kind, env.variables
            return old
        self._envs[name] = env
        return env

    # -- the original API ------------------------------------------------------------------------

    @camel_keywords
    def create(
        self,
        name: str,
        dependencies: Dependencies | None = None,
        additional_install_commands: ActivateCommands | None = None,
        force_external: bool = False,
    ) -> Environment:
        """Declare, lock and sync env ``name``, and return it.

        When the running interpreter already satisfies ``dependencies`` (and there are no
        install commands), the main environment is returned instead: calls then run in this
        process. ``force_external=True`` always makes a separate env.
        """
        dependencies = dict(dependencies or {})
        env = _spec_of(name, dependencies, additional_install_commands)
        if not force_external and not env.install_commands and main_env_satisfies(dependencies):
            log.info("the running interpreter satisfies %r: using the main environment", name)
            main = Environment.main()
            self._envs[name] = main  # load(name) finds it in this manager, as before
            return main
        with self._editing():
            current = self.project.spec.environments.get(name)
            if current == env:
                return self._sync(name)
            return self._save_and_sync(env)

    @camel_keywords
    def install(
        self,
        name: str,
        dependencies: Dependencies,
        additional_install_commands: ActivateCommands | None = None,
    ) -> Environment:
        """Grow env ``name`` by ``dependencies``: records it had are kept, the rest resolved,
        and the new content published as an ``Update`` (a new prefix)."""
        extra = _spec_of(name, dependencies, additional_install_commands)
        with self._editing():
            try:
                current = self.project.spec.env(name)
            except EnvNotFoundError:
                raise EnvNotFoundError(
                    f"no environment named {name!r} in {self.root}.",
                    hint=f"create it first: manager.create({name!r}, ...).",
                ) from None
            return self._save_and_sync(_merged(current, extra))

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
        receipt = project.store.receipt(prefix.name)
        env = Environment(
            name,
            prefix,
            kind=receipt.kind if receipt else env_spec.resolved_kind,
            variables=env_spec.variables,
            project=project,
        )
        env.extra_environ.update(self._proxies)
        env.manager = self
        self._envs[name] = env
        return env

    @camel_keywords
    def execute_commands(
        self,
        name: str,
        commands: Sequence[str] | str | ActivateCommands,
        additional_activate_commands: ActivateCommands | None = None,
        popen_kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run shell commands in env ``name``; returns the ``Popen``."""
        return self.load(name).execute_commands(
            commands,
            additional_activate_commands=additional_activate_commands,
            popen_kwargs=popen_kwargs,
        )

    def set_conda_path(self, path: Path | str) -> None:
        """Build with the micromamba at ``path`` (the micromamba engine) instead of rattler."""
        self._micromamba = Path(path).expanduser()

    def set_proxies(self, proxies: Mapping[str, str]) -> None:
        """Proxies (``{"http": ..., "https": ...}``) for rattler, uv, micromamba and the envs.

        They live in memory and in the environment of what runs: never in a file or a log.
        """
        unknown = set(proxies) - set(PROXY_VARIABLES)
        if unknown:
            raise SpecError(
                f"unknown proxy scheme(s) {', '.join(sorted(unknown))}",
                hint="use 'http', 'https' (and 'no' for NO_PROXY).",
            )
        self._proxies = {}
        for scheme, url in proxies.items():
            variable = PROXY_VARIABLES[scheme]
            self._proxies[variable] = self._proxies[variable.lower()] = str(url)
        for env in self._envs.values():
            env.extra_environ.update(self._proxies)

    def exit(self) -> None:
        """Stop every worker this manager launched."""
        for env in self._envs.values():
            env.exit()

    # the original camelCase API
    environmentExists = environment_exists
    executeCommands = execute_commands
    setCondaPath = set_conda_path
    setProxies = set_proxies


def main_env_satisfies(dependencies: Dependencies) -> bool:
    """True when the running interpreter already has what ``dependencies`` asks for.

    Versions are matched for real: PEP 440 specifiers with markers evaluated for pip entries;
    conda match specs against this prefix's ``conda-meta`` when it is a conda prefix.
    """
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import Version

    from cema.model.spec import version_request

    platform = current_platform()
    python = dependencies.get("python")
    running = Version(".".join(map(str, sys.version_info[:3])))
    if python and running not in version_request(str(python)):
        return False
    conda = [
        dep.spec
        for dep in (Dependency.from_data(d) for d in dependencies.get("conda", ()))
        if dep.applies_to(platform)
    ]
    if conda:
        prefix = Path(sys.prefix)
        if not (prefix / "conda-meta").is_dir():
            return False
        from cema.engines.rattler import prefix_satisfies

        if not prefix_satisfies(prefix, conda):
            return False
    for dep in (Dependency.from_data(d) for d in dependencies.get("pip", ())):
        if not dep.applies_to(platform):
            continue
        try:
            req = Requirement(dep.spec)
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
        if not req.specifier.contains(installed, prereleases=True):
            return False
    return True
