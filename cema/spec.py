"""Load ``cema.yaml`` or a spec dict, validate it against the schema, return frozen specs."""

from __future__ import annotations

import difflib
import functools
import json
import platform as _platform
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from cema._paths import default_home
from cema.errors import SpecError

SPEC_FILENAME = "cema.yaml"
FORMAT_VERSION = 1
DEFAULT_CHANNELS = ("conda-forge",)
ENV_NAME_RE = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

Kind = Literal["auto", "conda", "venv"]


def current_platform() -> str:
    """The conda platform string of this machine, e.g. ``linux-64`` or ``osx-arm64``."""
    machine = _platform.machine().lower()
    arch = {
        "x86_64": "64",
        "amd64": "64",
        "aarch64": "aarch64",
        "arm64": "arm64",
        "ppc64le": "ppc64le",
    }.get(machine, machine)
    if sys.platform.startswith("linux"):
        return f"linux-{arch}"
    if sys.platform == "darwin":
        return "osx-arm64" if arch in ("arm64", "aarch64") else "osx-64"
    if sys.platform == "win32":
        return "win-arm64" if arch in ("arm64", "aarch64") else "win-64"
    return f"{sys.platform}-{arch}"


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

    @property
    def root(self) -> Path:
        """The folder relative paths (local channels, the lock) are resolved against."""
        return self.path.parent if self.path is not None else Path.cwd()

    def env(self, name: str) -> EnvSpec:
        """The env called ``name``, or a ``SpecError`` naming the closest declared one."""
        try:
            return self.environments[name]
        except KeyError:
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


# --- validation ---------------------------------------------------------------------------


@functools.cache
def _schema() -> dict[str, Any]:
    text = resources.files("cema").joinpath("schemas/cema.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _key_path(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _node_at(node: yaml.Node | None, parts: Sequence[str | int]) -> yaml.Node | None:
    """The deepest YAML node along ``parts`` (for line numbers), or None without a document."""
    for part in parts:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                key_node = next((k for k, _ in node.value if k.value == part), None)
                return key_node or node
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def _key_node(node: yaml.Node | None, parts: Sequence[str | int], key: str) -> yaml.Node | None:
    parent = _node_at(node, parts)
    if isinstance(parent, yaml.MappingNode):
        return next((k for k, _ in parent.value if k.value == key), parent)
    return parent


def _allowed_keys(schema: Mapping[str, Any]) -> list[str]:
    props = schema.get("properties")
    if props is None and "$ref" in schema:
        ref = str(schema["$ref"]).rsplit("/", 1)[-1]
        props = _schema()["$defs"][ref].get("properties")
    return sorted(props or {})


def _describe(error: Any, root: yaml.Node | None, file: Path | None) -> SpecError:
    """Turn the most relevant jsonschema error into one sentence with file, line and key."""
    parts: list[str | int] = list(error.absolute_path)
    validator = error.validator
    hint: str | None = None
    node = _node_at(root, parts)
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = _allowed_keys(error.schema)
        extra = sorted(k for k in error.instance if k not in allowed)
        bad = extra[0] if extra else "?"
        node = _key_node(root, parts, bad)
        close = difflib.get_close_matches(bad, allowed, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}."
        message = f"unknown key {bad!r}"
        parts = [*parts, bad]
    elif validator == "propertyNames" or (
        validator == "pattern" and parts[:1] == ["environments"] and len(parts) == 1
    ):
        bad_name = str(error.instance)
        node = _key_node(root, parts, bad_name)
        if parts[:1] == ["environments"]:
            message = f"{bad_name!r} is not a valid environment name"
            hint = "use letters, digits, '.', '_' and '-' (no path separators, no '..')."
        else:
            message = f"{bad_name!r} is not a valid variable name"
            hint = "variable names are letters, digits and '_', not starting with a digit."
        parts = [*parts, bad_name]
    elif validator == "required":
        message = error.message.replace("is a required property", "is required")
        hint = "see specs/cema.schema.json for the format."
    elif validator == "type":
        expected = error.validator_value
        got = type(error.instance).__name__
        message = f"expected {expected}, got {got} ({error.instance!r})"
        if parts and parts[-1] == "python":
            hint = 'quote the version: python: "3.10" (YAML reads 3.10 as the number 3.1).'
        elif expected == "array":
            hint = "write a YAML list, one item per line starting with '- '."
    elif validator == "enum":
        choices = [str(c) for c in error.validator_value]
        close = difflib.get_close_matches(str(error.instance), choices, n=1, cutoff=0.4)
        message = f"{error.instance!r} is not one of {', '.join(choices)}"
        hint = f"did you mean {close[0]!r}?" if close else None
    elif validator == "oneOf" and len(parts) >= 2 and parts[-2] in ("conda", "pip"):
        message = f"expected a spec string or an entry with a `name`, got {error.instance!r}"
        hint = (
            "write `- numpy>=1.26`, or `- {name: numpy, platforms: [linux-64],"
            " dependencies: false, optional: true}`."
        )
    elif validator == "const":
        message = f"{error.instance!r} is not supported (expected {error.validator_value!r})"
        hint = f"this Cema reads format version {FORMAT_VERSION}."
    else:
        message = error.message
    line = node.start_mark.line + 1 if node is not None else None
    return SpecError(message, file=file, line=line, key=_key_path(parts) or None, hint=hint)


def validate(data: Any, *, file: Path | None = None, root: yaml.Node | None = None) -> None:
    """Raise ``SpecError`` for the first (most relevant) schema violation in ``data``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = list(validator.iter_errors(data))
    if errors:
        # the first problem in the file, then the most relevant error about it
        def line(error: Any) -> int:
            node = _node_at(root, list(error.absolute_path))
            return node.start_mark.line if node is not None else 0

        first = min(line(e) for e in errors)
        best = jsonschema.exceptions.best_match(e for e in errors if line(e) == first)
        raise _describe(best or errors[0], root, file)
    _check_requirements(data, file=file, root=root)


def _check_requirements(data: Any, *, file: Path | None, root: yaml.Node | None) -> None:
    """Every ``pip`` entry must be a PEP 508 requirement (the schema only says "string")."""
    from packaging.requirements import InvalidRequirement, Requirement

    for name, body in data["environments"].items():
        if (body or {}).get("kind") == "venv" and body.get("conda"):
            parts_kind: list[str | int] = ["environments", name, "kind"]
            node = _node_at(root, parts_kind)
            raise SpecError(
                "a venv cannot have conda dependencies",
                file=file,
                line=node.start_mark.line + 1 if node is not None else None,
                key=_key_path(parts_kind),
                hint="use `kind: conda` (or `auto`), or move the packages to `pip:`.",
            )
        for i, entry in enumerate((body or {}).get("pip", ())):
            text = entry if isinstance(entry, str) else entry["name"]
            try:
                Requirement(text)
            except InvalidRequirement as exc:
                parts: list[str | int] = ["environments", name, "pip", i]
                if not isinstance(entry, str):
                    parts.append("name")
                node = _node_at(root, parts)
                raise SpecError(
                    f"{text!r} is not a valid pip requirement ({str(exc).splitlines()[0]})",
                    file=file,
                    line=node.start_mark.line + 1 if node is not None else None,
                    key=_key_path(parts),
                    hint='write it as PEP 508 does, e.g. "requests>=2.31" or'
                    ' "pkg @ https://host/pkg-1.0-py3-none-any.whl".',
                ) from None


def _validated_marker(text: str) -> Path:
    import xxhash

    schema = resources.files("cema").joinpath("schemas/cema.schema.json").read_bytes()
    key = xxhash.xxh3_64_hexdigest(schema + b"\0" + text.encode("utf-8"))
    return default_home() / "validated" / key


def _validate_cached(data: Any, text: str, *, file: Path, root: yaml.Node | None) -> None:
    """Validate, remembering texts that passed: a no-op ``cema sync`` skips jsonschema."""
    marker = _validated_marker(text)
    if marker.exists():
        return
    validate(data, file=file, root=root)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:  # a read-only cache only costs speed
        pass


# --- loading ------------------------------------------------------------------------------


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None, str]:
    """Parse once: the node tree (for line numbers and duplicate keys) and the data."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            "no such file", file=path, hint="run `cema init` to create one, or pass --project."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the file ({exc})", file=path) from exc
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
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
    finally:
        loader.dispose()
    _check_duplicate_keys(root, path)
    return data, root, text


def _check_duplicate_keys(
    node: yaml.Node | None, path: Path, parts: tuple[str | int, ...] = ()
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if key.value in seen:
                raise SpecError(
                    f"the key {key.value!r} appears twice",
                    file=path,
                    line=key.start_mark.line + 1,
                    key=_key_path([*parts, key.value]),
                    hint="keep one of them: YAML would silently use the last.",
                )
            seen.add(key.value)
            _check_duplicate_keys(value, path, (*parts, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, path, (*parts, i))


def load_project(path: Path | str) -> ProjectSpec:
    """Read and validate a ``cema.yaml`` (a file, or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_FILENAME
    data, root, text = _read_yaml(path)
    if data is None:
        raise SpecError(
            "the file is empty", file=path, hint="run `cema init` to write a starting point."
        )
    _validate_cached(data, text, file=path, root=root)
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
    envs = {
        name: _env_from_validated(name, body or {}, channels=channels, platforms=platforms)
        for name, body in sorted(data["environments"].items())
    }
    return ProjectSpec(
        path=path,
        environments=envs,
        channels=channels,
        platforms=platforms,
        store=data.get("store"),
        engine=data.get("engine", "rattler"),
    )


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
    doc["environments"] = envs
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
