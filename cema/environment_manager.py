"""``EnvironmentManager``: the original Cema API, as its users wrote it, on the declarative core."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from cema import logger as cema_logger
from cema._fs import atomic_write
from cema._internal.command_generator import (
    Commands,
    commands_for_platform,
    micromamba_install_commands,
    micromamba_of,
    need_micromamba,
    normalized,
    pip_commands,
    prefix_python,
)
from cema._internal.command_generator import script_argv as _script_argv
from cema._internal.dependency_manager import Dependencies, check_dependencies, selected
from cema.environment import POPEN_DEFAULTS, Environment
from cema.errors import CommandFailedError, EngineUnavailableError, EnvNotFoundError, SpecError
from cema.external_environment import ExternalEnvironment
from cema.internal_environment import InternalEnvironment
from cema.manager import EnvironmentManager as _Core
from cema.manager import main_env_satisfies
from cema.model.spec import check_env_name

__all__ = ["EnvironmentManager", "SettingsManager"]

#: the store of the content-addressed prefixes, inside the conda root
STORE_DIR = ".cema"
_MIN_PYTHON = (3, 9)


class SettingsManager:
    """Where the root is (``condaPath``), its ``.mambarc``, and the proxies read from it."""

    condaBin = "micromamba"

    def __init__(self, condaPath: str | Path = "micromamba") -> None:
        self.proxies: dict[str, str] | None = None
        self.setCondaPath(condaPath)

    def setCondaPath(self, condaPath: str | Path) -> None:
        """Use the root ``condaPath`` (relative to the working directory) and its ``.mambarc``.

        As in the original, the proxies already set are kept unless that ``.mambarc`` names its
        own (``proxy_servers``, or the ``proxies`` key the original read).
        """
        self.condaPath = Path(condaPath).expanduser().resolve()
        self.condaBinConfig = f'{self.condaBin} --rc-file "{self.mambarc}"'
        config = self.config()
        found = config.get("proxy_servers") or config.get("proxies")
        if isinstance(found, Mapping) and found:
            self.proxies = {str(k): str(v) for k, v in found.items()}

    @property
    def mambarc(self) -> Path:
        """``<condaPath>/.mambarc``, what micromamba reads through ``--rc-file``."""
        return self.condaPath / ".mambarc"

    def config(self) -> dict[str, Any]:
        """The ``.mambarc`` settings (empty when there is no file)."""
        try:
            loaded = yaml.safe_load(self.mambarc.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return dict(loaded) if isinstance(loaded, Mapping) else {}

    def setProxies(self, proxies: Mapping[str, str]) -> None:
        """Write ``proxies`` to ``.mambarc`` (``proxy_servers``); empty removes them."""
        config = self.config()
        if proxies:
            config["proxy_servers"] = dict(proxies)
        else:
            config.pop("proxy_servers", None)
        self.condaPath.mkdir(parents=True, exist_ok=True)
        atomic_write(self.mambarc, yaml.safe_dump(config) if config else "")
        self.proxies = dict(proxies) or None


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _output_lines() -> Iterator[list[str]]:
    handler = _Lines()
    cema_logger.logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        cema_logger.logger.removeHandler(handler)


def _check_python(dependencies: Mapping[str, Any]) -> str:
    """The env's python: the one asked for (3.9 or newer) or the host's ``major.minor``."""
    asked = str(dependencies.get("python") or "").replace("=", "").strip()
    match = re.search(r"(\d+)\.(\d+)", asked)
    if match and (int(match.group(1)), int(match.group(2))) < _MIN_PYTHON:
        raise SpecError("Python version must be greater than 3.8", key="python")
    return asked or "{}.{}".format(*sys.version_info[:2])


class EnvironmentManager:
    """Named conda envs in ``condaPath`` (``<condaPath>/envs/<name>``), made by Cema's core."""

    def __init__(
        self,
        condaPath: str | Path = "micromamba",
        mainCondaEnvironmentPath: str | Path | None = None,
    ) -> None:
        cema_logger.use_console()
        #: the envs this manager made or found, by name
        self.environments: dict[str, Environment] = {}
        #: what the main environment has, once read (``{"pip": {name: version}}``)
        self.installedPackages: dict[str, dict[str, str]] = {}
        self.mainEnvironment = InternalEnvironment(mainCondaEnvironmentPath, self)
        self.settingsManager = SettingsManager(condaPath)
        self._core = self._make_core()

    def __repr__(self) -> str:
        return f"EnvironmentManager({str(self.settingsManager.condaPath)!r})"

    def _make_core(self) -> _Core:
        root = self.settingsManager.condaPath
        core = _Core(root, store=root / STORE_DIR)
        core.set_proxies(self.settingsManager.proxies or {})
        return core

    def setCondaPath(self, condaPath: str | Path) -> None:
        """Switch to the root ``condaPath``: later calls find, make and run envs there (with its
        ``.mambarc``); envs of the old root stay in ``environments`` and keep working."""
        self.settingsManager.setCondaPath(condaPath)
        self._core = self._make_core()

    def setProxies(self, proxies: Mapping[str, str]) -> None:
        """Proxies for micromamba (``.mambarc``), rattler, uv and the envs; ``{}`` removes them."""
        self._core.set_proxies(proxies)  # checks the schemes before anything is written
        self.settingsManager.setProxies(proxies)
        for env in self.environments.values():
            for key in [k for k in env.extra_environ if k.lower().endswith("_proxy")]:
                del env.extra_environ[key]
            env.extra_environ.update(self._core._proxies)

    # -- where envs live ---------------------------------------------------------------------------

    def envPath(self, name: str) -> Path:
        """``<condaPath>/envs/<name>``: a link to the env's content-addressed prefix."""
        return self.settingsManager.condaPath / "envs" / check_env_name(name)

    def environmentExists(self, environment: str) -> bool:
        """True when ``<condaPath>/envs/<environment>/conda-meta`` is a folder."""
        return (self.envPath(environment) / "conda-meta").is_dir()

    def _link(self, name: str, prefix: Path) -> None:
        link = self.envPath(name)
        link.parent.mkdir(parents=True, exist_ok=True)
        temporary = link.with_name(f".{name}.{os.getpid()}.link")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        if sys.platform == "win32":  # pragma: no cover - a junction needs no privilege
            import _winapi

            _winapi.CreateJunction(str(prefix), str(temporary))
        else:
            temporary.symlink_to(prefix, target_is_directory=True)
        os.replace(temporary, link)

    def _existing(self, name: str) -> ExternalEnvironment:
        try:
            core = self._core.load(name)
        except (EnvNotFoundError, SpecError):  # made by micromamba itself: the link is all
            env = ExternalEnvironment(name, self)
        else:
            env = ExternalEnvironment(
                name, self, prefix=core.prefix, kind=core.kind, variables=core.variables
            )
        env.extra_environ.update(self._core._proxies)
        self.environments[name] = env
        return env

    # -- the original API --------------------------------------------------------------------------

    def create(
        self,
        environment: str,
        dependencies: Dependencies | Mapping[str, Any] | None = None,
        additionalInstallCommands: Commands | None = None,
        forceExternal: bool = False,
    ) -> ExternalEnvironment | InternalEnvironment:
        """The env ``environment``: made now, found from before, or the main env when that has
        what ``dependencies`` asks (and ``forceExternal`` is false)."""
        check_env_name(environment)
        deps: dict[str, Any] = dict(dependencies or {})
        known = self._known(environment)
        if isinstance(known, ExternalEnvironment | InternalEnvironment):
            return known
        if self.environmentExists(environment):
            return self._existing(environment)
        install = normalized(additionalInstallCommands, "additionalInstallCommands")
        check_dependencies(deps)
        if not forceExternal and self._main_satisfies(deps):
            return self.mainEnvironment
        body = {"kind": "conda", **deps, "python": _check_python(deps)}
        mambarc = self.settingsManager.config().get("channels")
        if mambarc and "channels" not in body:
            body["channels"] = list(mambarc)
        made = self._core.create(
            environment, body, _in_the_callers_cwd(install), force_external=True
        )
        assert made.prefix is not None
        self._link(environment, made.prefix)
        env = ExternalEnvironment(
            environment, self, prefix=made.prefix, kind=made.kind, variables=made.variables
        )
        env.extra_environ.update(made.extra_environ)
        self.environments[environment] = env
        return env

    def _main_satisfies(self, deps: Mapping[str, Any]) -> bool:
        if deps.get("conda"):
            main = self.mainEnvironment.path
            if main is None or not (main / "conda-meta").is_dir():
                return False
            from cema.engines.rattler import prefix_satisfies

            specs = [d if isinstance(d, str) else d["name"] for d in deps["conda"]]
            if not prefix_satisfies(main, specs):
                return False
        return main_env_satisfies({k: v for k, v in deps.items() if k != "conda"})

    def install(
        self,
        environmentName: str | None,
        dependencies: Dependencies | Mapping[str, Any],
        additionalInstallCommands: Commands | None = None,
    ) -> list[str]:
        """Add ``dependencies`` to env ``environmentName`` (``mainEnvironment.name`` or the
        ``mainCondaEnvironmentPath``: that conda env, through ``<condaPath>/bin/micromamba``;
        ``None``: pip ones into this Python environment); returns the output lines. A running
        worker imports them at once."""
        deps: dict[str, Any] = dict(dependencies)
        install = normalized(additionalInstallCommands, "additionalInstallCommands")
        check_dependencies(deps)
        if environmentName is None:
            return self._install_here(deps, install)
        main = self._main_prefix(environmentName)
        if main is not None:
            return self._install_into_main(main, deps, install)
        env = self._named(environmentName)
        if not isinstance(env, ExternalEnvironment):
            return self._install_here(deps, install)
        if env.prefix == env.envLink:  # made by micromamba itself: installed by it, as before
            return self._install_with_micromamba(env, deps, install)
        with _output_lines() as lines:
            grown = self._core.install(environmentName, deps, _in_the_callers_cwd(install))
        assert grown.prefix is not None
        self._link(environmentName, grown.prefix)
        old, env.prefix = env.prefix, grown.prefix
        env.kind, env.variables = grown.kind, grown.variables
        if env.launched() and old != grown.prefix:
            self._reach_worker(env, grown.prefix)
        return lines

    def _reach_worker(self, env: ExternalEnvironment, prefix: Path) -> None:
        """Put the new prefix's site-packages on the running worker's path."""
        site = env.execute("sysconfig", "get_path", ["purelib"], {"vars": _bases(prefix)})
        env.execute("site", "addsitedir", [site])
        env.execute("importlib", "invalidate_caches")

    def _main_prefix(self, name: str) -> Path | None:
        """The main conda env's prefix when ``name`` names it (``mainEnvironment.name``, or its
        path, with or without the original's trailing slash), else None."""
        main = self.mainEnvironment.path
        if main is None:
            return None
        if name in (self.mainEnvironment.name, str(main), str(main / "_")[:-1]):
            return main
        if any(sep in name for sep in ("/", os.sep)) and Path(name).resolve() == main.resolve():
            return main
        return None

    def _install_into_main(
        self, prefix: Path, deps: Mapping[str, Any], install: Mapping[str, list[str]]
    ) -> list[str]:
        """The original's install into ``mainCondaEnvironmentPath``: its script (hook,
        ``micromamba activate PREFIX``, ``micromamba install``, ``pip install``) through
        ``<condaPath>/bin/micromamba``; pip entries alone need no micromamba (that prefix's pip)."""
        root = self.settingsManager.condaPath
        conda, pip = selected(deps, "conda"), selected(deps, "pip")
        what = [*conda[0], *conda[1], *pip[0], *pip[1]]
        if not any(conda) and not micromamba_of(root).is_file():
            commands = pip_commands(prefix_python(prefix), pip)
        else:
            need_micromamba(root, f"the main environment {prefix}", "as the original laid it out")
            commands = micromamba_install_commands(root, str(prefix), conda, pip)
        lines = self._run_streamed(commands + commands_for_platform(install), what, str(prefix))
        self.installedPackages.clear()
        importlib.invalidate_caches()  # the main env may be this process: new modules at once
        return lines

    def _install_with_micromamba(
        self, env: ExternalEnvironment, deps: Mapping[str, Any], install: Mapping[str, list[str]]
    ) -> list[str]:
        """The original's install into an env micromamba made (``envs/<name>`` a folder of its
        own, not Cema's link): its script through ``<condaPath>/bin/micromamba``."""
        root = self.settingsManager.condaPath
        need_micromamba(root, f"environment {env.name!r}, made by micromamba,", "put it back")
        conda, pip = selected(deps, "conda"), selected(deps, "pip")
        commands = micromamba_install_commands(root, env.name, conda, pip)
        what = [*conda[0], *conda[1], *pip[0], *pip[1]]
        lines = self._run_streamed(commands + commands_for_platform(install), what, env.name)
        if env.launched():  # same prefix: the worker sees the new files once its caches go
            env.execute("importlib", "invalidate_caches")
        return lines

    def _run_streamed(self, commands: list[str], what: list[str], where: str) -> list[str]:
        """Run ``commands`` (one stopping script), log and return their lines."""
        lines: list[str] = []
        environ = {**os.environ, **self._core._proxies}
        with self.executeCommands(None, commands, popenKwargs={"env": environ}) as process:
            assert process.stdout is not None
            for raw in process.stdout:
                lines.append(raw.strip())
                cema_logger.logger.info("%s", lines[-1])
        if process.returncode:
            raise CommandFailedError(
                f"installing {what} into {where} failed.",
                returncode=process.returncode,
                output_tail="\n".join(lines[-20:]),
            )
        return lines

    def _install_here(self, deps: Mapping[str, Any], install: Mapping[str, list[str]]) -> list[str]:
        """The original's ``install(None, ...)``: pip entries into the running Python (``pip
        install``, ``--no-deps`` for ``dependencies: False``), then the install commands."""
        if any(selected(deps, "conda")):
            raise SpecError(
                "Conda dependencies can only be installed in a Conda environment. Please provide "
                "an existing conda environment to install dependencies.",
                hint="give the name of an environment made by this manager.",
            )
        pip = selected(deps, "pip")
        if any(pip) and importlib.util.find_spec("pip") is None:
            raise EngineUnavailableError(
                f"pip is not installed in this Python ({sys.executable}).",
                hint=f"install it ({sys.executable} -m ensurepip), or make an env for {pip}.",
            )
        commands = pip_commands(Path(sys.executable), pip) + commands_for_platform(install)
        lines = self._run_streamed(commands, [*pip[0], *pip[1]], "this Python environment")
        self.installedPackages.pop("pip", None)
        return lines

    def executeCommands(
        self,
        environmentName: str | None,
        commands: Commands,
        additionalActivateCommands: Commands | None = None,
        popenKwargs: Mapping[str, Any] | None = None,
    ) -> subprocess.Popen[Any]:
        """Run ``commands`` in the activated env (bash; PowerShell on Windows); the ``Popen``."""
        if environmentName is not None:
            env = self._named(environmentName)
            if isinstance(env, ExternalEnvironment):
                return env.popen(commands, additionalActivateCommands, popenKwargs)
        script = commands_for_platform(additionalActivateCommands, "additionalActivateCommands")
        script += commands_for_platform(commands)
        kwargs = {**POPEN_DEFAULTS, **(popenKwargs or {})}
        return subprocess.Popen(_script_argv(script), **kwargs)

    def _known(self, name: str) -> Environment | None:
        """The env ``name`` of ``environments`` if it is in the current root (not one of the
        root before ``setCondaPath``)."""
        env = self.environments.get(name)
        if isinstance(env, ExternalEnvironment) and env.envLink != self.envPath(name):
            return None
        return env

    def _named(self, name: str) -> Environment:
        known = self._known(name)
        if known is not None:
            return known
        if self.environmentExists(name):
            return self._existing(name)
        raise EnvNotFoundError(
            f"no environment named {name!r} in {self.settingsManager.condaPath}.",
            hint=f"create it first: environmentManager.create({name!r}, dependencies).",
        )

    def _forget(self, environment: Environment) -> None:
        if self.environments.get(environment.name) is environment:
            del self.environments[environment.name]

    def exit(self) -> None:
        """Exit every env of this manager."""
        for env in list(self.environments.values()):
            env.exit()

    # snake_case aliases
    environment_exists = environmentExists
    execute_commands = executeCommands
    set_conda_path = setCondaPath
    set_proxies = setProxies


def _in_the_callers_cwd(install: Mapping[str, list[str]]) -> dict[str, list[str]] | None:
    """This OS's install commands as the original ran them: one script (bash; PowerShell on
    Windows) in the caller's working directory, so a ``cd`` or an ``export`` holds for the next
    command, stopping at the first failure. (The core runs each command alone in the prefix.)"""
    commands = commands_for_platform(install)
    if not commands:
        return None
    argv = _script_argv(commands)
    if sys.platform == "win32":  # pragma: no cover - cmd.exe runs the core's install commands
        return {"all": [f'cd /d "{Path.cwd()}" && {subprocess.list2cmdline(argv)}']}
    return {"all": [f"cd {shlex.quote(str(Path.cwd()))} && {shlex.join(argv)}"]}


def _bases(prefix: Path) -> dict[str, str]:
    return {"base": str(prefix), "platbase": str(prefix)}
