"""Load ``cema.yaml`` or a spec dict, validate it against the schema, return frozen specs."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cema._fs import SPEC_LIMIT, MiB, read_text_capped
from cema._paths import SPEC_FILENAME, current_platform
from cema.errors import SpecError, UnreadableFileError
from cema.model import _yaml
from cema.model.pypi import PypiOptions
from cema.model.validate import (
    FORMAT_VERSION,
    check_duplicate_keys,
    remember_validated,
    validate,
    validated_document,
)

if TYPE_CHECKING:
    import yaml
    from packaging.specifiers import SpecifierSet

DEFAULT_CHANNELS = ("conda-forge",)
#: where the package name of a conda match spec ends (``numpy>=2``, ``numpy 2.*``, ``numpy[...]``)
CONDA_NAME_END = re.compile(r"[\s=<>!~\[]")
ENV_NAME_RE = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

Kind = Literal["auto", "conda", "venv"]
#: how a prefix gets its files from the package caches: shared hard links, or copies of its own
LinkMode = Literal["hardlink", "copy"]
#: a ``python`` request that names one version (``3.11``, ``==3.11.4``, ``3.11.*``)
_PYTHON_VERSION = re.compile(r"^=?=?\s*(\d+(?:\.\d+)*)(\.\*)?$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Dependency:
    """One conda or pip dependency: its spec and where and how it is installed."""

    spec: str
    platforms: tuple[str, ...] = ()
    dependencies: bool = True
    optional: bool = False

    @property
    def is_plain(self) -> bool:
        """True for a bare spec string (no options)."""
        return not self.platforms and self.dependencies and not self.optional

    def applies_to(self, platform: str) -> bool:
        """True when the entry exists on ``platform``."""
        return not self.platforms or platform in self.platforms

    def to_data(self) -> str | dict[str, Any]:
        """The entry as written in ``cema.yaml``."""
        if self.is_plain:
            return self.spec
        out: dict[str, Any] = {"name": self.spec}
        if self.platforms:
            out["platforms"] = list(self.platforms)
        if not self.dependencies:
            out["dependencies"] = False
        if self.optional:
            out["optional"] = True
        return out

    @classmethod
    def from_data(cls, data: str | Mapping[str, Any]) -> Dependency:
        """An entry from ``cema.yaml`` (a string or a validated mapping)."""
        if isinstance(data, str):
            return cls(spec=data)
        return cls(
            spec=str(data["name"]),
            platforms=tuple(data.get("platforms", ())),
            dependencies=bool(data.get("dependencies", True)),
            optional=bool(data.get("optional", False)),
        )


#: the keys of ``install_commands``: every platform, or one OS family
COMMAND_KEYS = ("all", "linux", "mac", "windows")
_FAMILY = {"linux": "linux", "osx": "mac", "win": "windows"}


def platform_family(platform: str) -> str:
    """``linux-64`` → ``linux``, ``osx-arm64`` → ``mac``, ``win-64`` → ``windows``."""
    return _FAMILY.get(platform.split("-", 1)[0], platform)


@dataclass(frozen=True, kw_only=True, slots=True)
class EnvSpec:
    """One declared environment, with project defaults already applied."""

    name: str
    python: str | None = None
    conda: tuple[Dependency, ...] = ()
    pip: tuple[Dependency, ...] = ()
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    own_channels: bool = False
    platforms: tuple[str, ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    kind: Kind = "auto"
    install_commands: tuple[tuple[str, tuple[str, ...]], ...] = ()
    link: LinkMode = "hardlink"
    pypi_options: PypiOptions | None = None

    def commands_for(self, platform: str) -> tuple[str, ...]:
        """The install commands that run on ``platform`` (``all`` first)."""
        by_key = dict(self.install_commands)
        return by_key.get("all", ()) + by_key.get(platform_family(platform), ())

    def conda_for(self, platform: str) -> tuple[Dependency, ...]:
        """The conda entries that exist on ``platform``."""
        return tuple(d for d in self.conda if d.applies_to(platform))

    def pip_for(self, platform: str) -> tuple[Dependency, ...]:
        """The pip entries that exist on ``platform``."""
        return tuple(d for d in self.pip if d.applies_to(platform))

    @property
    def resolved_kind(self) -> Literal["conda", "venv"]:
        """``venv`` for pip-only envs without channels of their own (under ``kind: auto``)."""
        if self.kind != "auto":
            return self.kind
        return "venv" if not self.conda and not self.own_channels else "conda"


@dataclass(frozen=True, kw_only=True, slots=True)
class ProjectSpec:
    """A whole ``cema.yaml``: defaults and environments by name."""

    path: Path | None
    environments: Mapping[str, EnvSpec] = field(default_factory=dict)
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    platforms: tuple[str, ...] = ()
    store: str | None = None
    engine: str = "rattler"
    link: LinkMode = "hardlink"  # the default of envs that do not set their own

    @property
    def root(self) -> Path:
        """The folder relative paths (local channels, the lock) are resolved against."""
        return self.path.parent if self.path is not None else Path.cwd()

    def env(self, name: str) -> EnvSpec:
        """The env called ``name``, or a ``SpecError`` naming the closest declared one."""
        try:
            return self.environments[name]
        except KeyError:
            import difflib

            from cema.errors import EnvNotFoundError

            close = difflib.get_close_matches(name, list(self.environments), n=1)
            declared = ", ".join(sorted(self.environments)) or "none"
            raise EnvNotFoundError(
                f"no environment named {name!r} in {self.path or 'the spec'}"
                f" (declared: {declared}).",
                hint=f"did you mean {close[0]!r}?"
                if close
                else "declare it under `environments:`.",
            ) from None


# --- loading ------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return read_text_capped(path, SPEC_LIMIT)
    except FileNotFoundError:
        raise SpecError(
            "no such file", file=path, hint="run `cema init` to create one, or pass --project."
        ) from None
    except UnreadableFileError as exc:
        raise SpecError(
            exc.reason,
            file=path,
            line=exc.line,
            hint=f"cema.yaml must be a regular UTF-8 text file of at most {SPEC_LIMIT // MiB} MiB.",
        ) from None
    except OSError as exc:
        raise SpecError(f"cannot read the file ({exc.strerror or exc})", file=path) from None


def _parse_yaml(text: str, path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse once: the node tree (for line numbers and duplicate keys) and the data."""
    import yaml

    try:
        root, data = _yaml.load(text)
    except _yaml.Refused as exc:
        raise SpecError(
            f"this YAML is refused: {exc.reason}",
            file=path,
            line=exc.line,
            key=exc.key or None,
            hint="write the values out: Cema files are small, shallow and plain.",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "malformed YAML"
        raise SpecError(
            f"this is not valid YAML: {problem}",
            file=path,
            line=line,
            hint="check the indentation and the ':' after each key.",
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"this is not valid YAML: {exc}", file=path) from None
    check_duplicate_keys(root, path)
    return data, root


def load_project(path: Path | str) -> ProjectSpec:
    """Read and validate a ``cema.yaml`` (a file, or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_FILENAME
    text = _read_text(path)
    data = validated_document(text)
    if data is None:
        data, root = _parse_yaml(text, path)
        if data is None:
            raise SpecError(
                "the file is empty", file=path, hint="run `cema init` to write a starting point."
            )
        validate(data, file=path, root=root)
        remember_validated(text, data)
    return _project_from_validated(data, path=path.resolve())


def project_from_dict(
    data: Any, *, path: Path | None = None, root: yaml.Node | None = None
) -> ProjectSpec:
    """Validate a whole-project mapping (the content of ``cema.yaml``) and freeze it."""
    validate(data, file=path, root=root)
    return _project_from_validated(data, path=path)


def _project_from_validated(data: Any, *, path: Path | None) -> ProjectSpec:
    channels = tuple(data.get("channels", DEFAULT_CHANNELS))
    platforms = tuple(data.get("platforms", (current_platform(),)))
    link = data.get("link", "hardlink")
    base = path.parent if path is not None else None
    envs = {
        name: _with_pypi_options(
            _env_from_validated(
                name, {"link": link, **(body or {})}, channels=channels, platforms=platforms
            ),
            PypiOptions.from_data(
                data.get("pypi-options"), (body or {}).get("pypi-options"), base=base
            ),
        )
        for name, body in sorted(data["environments"].items())
    }
    return ProjectSpec(
        path=path,
        environments=envs,
        channels=channels,
        platforms=platforms,
        store=data.get("store"),
        engine=data.get("engine", "rattler"),
        link=link,
    )


def _with_pypi_options(env: EnvSpec, options: PypiOptions | None) -> EnvSpec:
    return env if options is None else replace(env, pypi_options=options)


def _env_from_validated(
    name: str, body: Mapping[str, Any], *, channels: tuple[str, ...], platforms: tuple[str, ...]
) -> EnvSpec:
    own = "channels" in body
    return EnvSpec(
        name=name,
        python=body.get("python"),
        conda=tuple(Dependency.from_data(d) for d in body.get("conda", ())),
        pip=tuple(Dependency.from_data(d) for d in body.get("pip", ())),
        channels=tuple(body["channels"]) if own else channels,
        own_channels=own,
        platforms=tuple(body.get("platforms", platforms)),
        variables=tuple(sorted((k, _var_text(v)) for k, v in body.get("variables", {}).items())),
        kind=body.get("kind", "auto"),
        install_commands=tuple(
            (key, tuple(body["install_commands"][key]))
            for key in COMMAND_KEYS
            if body.get("install_commands", {}).get(key)
        ),
        link=body.get("link", "hardlink"),
    )


def _var_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def env_from_dict(
    name: str,
    data: Mapping[str, Any],
    *,
    channels: Sequence[str] = DEFAULT_CHANNELS,
    platforms: Sequence[str] | None = None,
) -> EnvSpec:
    """Validate one env given as a dict (the original ``{"python", "conda", "pip"}`` shape)."""
    doc = {"version": FORMAT_VERSION, "environments": {name: dict(data)}}
    if platforms is not None:
        doc["platforms"] = list(platforms)
    doc["channels"] = list(channels)
    return project_from_dict(doc).environments[name]


def check_env_name(name: str) -> str:
    """Return ``name`` if it is a safe env name, else raise ``SpecError``."""
    if not isinstance(name, str) or not ENV_NAME_RE.match(name):
        raise SpecError(
            f"{name!r} is not a valid environment name",
            hint="use letters, digits, '.', '_' and '-' (no path separators, no '..').",
        )
    return name


def iter_envs(project: ProjectSpec, names: Sequence[str] | None = None) -> Iterator[EnvSpec]:
    """The envs called ``names`` (all when empty), in name order."""
    if not names:
        yield from (project.environments[n] for n in sorted(project.environments))
        return
    for name in names:
        yield project.env(name)


def dump_project(project: ProjectSpec) -> str:
    """Serialise a project back to ``cema.yaml`` text (used by ``cema init`` and the manager)."""
    envs: dict[str, Any] = {}
    for name, env in sorted(project.environments.items()):
        body: dict[str, Any] = {}
        if env.python is not None:
            body["python"] = env.python
        if env.conda:
            body["conda"] = [d.to_data() for d in env.conda]
        if env.pip:
            body["pip"] = [d.to_data() for d in env.pip]
        if env.own_channels:
            body["channels"] = list(env.channels)
        if env.platforms != project.platforms:
            body["platforms"] = list(env.platforms)
        if env.variables:
            body["variables"] = dict(env.variables)
        if env.kind != "auto":
            body["kind"] = env.kind
        if env.install_commands:
            body["install_commands"] = {k: list(v) for k, v in env.install_commands}
        if env.link != project.link:
            body["link"] = env.link
        if env.pypi_options is not None:
            body["pypi-options"] = env.pypi_options.to_data()
        envs[name] = body
    doc: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "channels": list(project.channels),
        "platforms": list(project.platforms),
    }
    if project.store:
        doc["store"] = project.store
    if project.engine != "rattler":
        doc["engine"] = project.engine
    if project.link != "hardlink":
        doc["link"] = project.link
    doc["environments"] = envs
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def version_request(request: str | None) -> SpecifierSet:
    """A ``python`` request as a specifier: ``"3.11"`` → ``==3.11.*``; ranges as written."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if not request:
        return SpecifierSet()
    match = _PYTHON_VERSION.match(request.strip())
    if match:
        version = match.group(1)
        return SpecifierSet(f"=={version}" if version.count(".") >= 2 else f"=={version}.*")
    try:
        return SpecifierSet(request.replace(" ", ""))
    except InvalidSpecifier:
        raise SpecError(
            f"{request!r} is not a Python version constraint",
            key="python",
            hint='write a version like "3.11" or a range like ">=3.10,<3.13".',
        ) from None


def conda_name(spec: str) -> str:
    """The package a conda match spec is about: ``conda-forge::NumPy>=2`` → ``numpy``."""
    bare = spec.split("::", 1)[-1].strip()
    return CONDA_NAME_END.split(bare, maxsplit=1)[0].lower()


__all__ = [
    "COMMAND_KEYS",
    "CONDA_NAME_END",
    "DEFAULT_CHANNELS",
    "ENV_NAME_RE",
    "SPEC_FILENAME",
    "Dependency",
    "EnvSpec",
    "Kind",
    "LinkMode",
    "ProjectSpec",
    "check_env_name",
    "conda_name",
    "current_platform",
    "dump_project",
    "env_from_dict",
    "iter_envs",
    "load_project",
    "platform_family",
    "project_from_dict",
    "version_request",
]
