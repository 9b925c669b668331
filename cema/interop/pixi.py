"""A ``pixi.toml`` or ``pyproject.toml [tool.pixi]`` read as ``cema.yaml`` envs."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cema.errors import SpecError
from cema.interop.importers import Imported, check_pip, read_text, rebase_channel
from cema.model.spec import current_platform

#: pixi's target selectors that name a family of platforms
_FAMILIES = {"linux": ("linux-",), "osx": ("osx-",), "win": ("win-",), "unix": ("linux-", "osx-")}
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        doc: dict[str, Any] = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        raise SpecError(f"this is not valid TOML: {exc}", file=path, line=line) from None
    return doc


def _conda_spec(name: str, value: Any, *, file: Path, key: str) -> str:
    if isinstance(value, str):
        return name if value.strip() in ("", "*") else f"{name} {value.strip()}"
    if isinstance(value, Mapping):
        unknown = set(value) - {"version", "build", "channel", "build-number"}
        if unknown:
            raise SpecError(
                f"{', '.join(sorted(unknown))} in a conda dependency cannot be declared in"
                " cema.yaml",
                file=file,
                key=key,
                hint="depend on a built package by version (and build) from a channel.",
            )
        version = str(value.get("version", "*")).strip() or "*"
        build = value.get("build")
        spec = name if version == "*" and not build else f"{name} {version}"
        if build:
            spec += f" {build}"
        channel = value.get("channel")
        return f"{channel}::{spec}" if channel else spec
    raise SpecError(f"{value!r} is not a conda dependency", file=file, key=key)


def _pypi_spec(name: str, value: Any, *, file: Path, key: str) -> str:
    if isinstance(value, str):
        version = value.strip()
        if version in ("", "*"):
            text = name
        else:
            text = name + ("==" + version if version[:1].isdigit() else version)
    elif isinstance(value, Mapping):
        extras = value.get("extras") or []
        base = name + (f"[{','.join(extras)}]" if extras else "")
        if "path" in value or value.get("editable"):
            raise SpecError(
                "local path (and editable) pypi dependencies are not locked by Cema",
                file=file,
                key=key,
                hint="build a wheel and require it by URL, or install it with `install_commands`.",
            )
        if "index" in value:
            raise SpecError(
                "a pypi dependency's own index cannot be declared in cema.yaml yet",
                file=file,
                key=key,
                hint="set UV_INDEX_URL or UV_EXTRA_INDEX_URL for uv, and remove `index`.",
            )
        if "url" in value:
            text = f"{base} @ {value['url']}"
        elif "git" in value:
            rev = value.get("rev") or value.get("tag") or value.get("branch")
            text = f"{base} @ git+{value['git']}" + (f"@{rev}" if rev else "")
        else:
            version = str(value.get("version", "*")).strip()
            text = base if version in ("", "*") else base + version
    else:
        raise SpecError(f"{value!r} is not a pypi dependency", file=file, key=key)
    return check_pip(text, file=file, line=None)


def _selected(selector: str, platforms: list[str]) -> list[str]:
    if selector in _FAMILIES:
        return [p for p in platforms if p.startswith(_FAMILIES[selector])]
    return [p for p in platforms if p == selector]


class _Env:
    """One pixi env being composed: per layer, per package, the spec on each platform."""

    def __init__(self, platforms: list[str]) -> None:
        self.platforms = platforms
        self.layers: dict[str, dict[str, dict[str, str]]] = {"conda": {}, "pip": {}}
        self.variables: dict[str, str] = {}
        self.channels: list[str] = []

    def add(self, feature: Mapping[str, Any], *, file: Path, where: str) -> None:
        if feature.get("platforms"):
            wanted = {str(p) for p in feature["platforms"]}
            self.platforms = [p for p in self.platforms if p in wanted]
        for channel in feature.get("channels") or []:
            name = str(channel["channel"] if isinstance(channel, Mapping) else channel)
            if name not in self.channels:
                self.channels.append(name)
        self._deps(feature, self.platforms, file=file, where=where)
        for selector, sub in sorted((feature.get("target") or {}).items()):
            chosen = _selected(str(selector), self.platforms)
            self._deps(sub, chosen, file=file, where=f"{where}target.{selector}.")
        env = (feature.get("activation") or {}).get("env") or {}
        self.variables.update({str(k): str(v) for k, v in env.items()})

    def requirements(self, texts: list[str]) -> None:
        from packaging.requirements import Requirement

        for text in texts:
            per = self.layers["pip"].setdefault(Requirement(text).name.lower(), {})
            per.update(dict.fromkeys(self.platforms, text))

    def _deps(
        self, table: Mapping[str, Any], platforms: list[str], *, file: Path, where: str
    ) -> None:
        for section, layer in (("dependencies", "conda"), ("pypi-dependencies", "pip")):
            for name, value in (table.get(section) or {}).items():
                key = f"{where}{section}.{name}"
                if layer == "conda":
                    spec = _conda_spec(str(name), value, file=file, key=key)
                else:
                    spec = _pypi_spec(str(name), value, file=file, key=key)
                per = self.layers[layer].setdefault(str(name).lower(), {})
                per.update(dict.fromkeys(platforms, spec))

    def body(self, *, default_channels: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for layer, packages in self.layers.items():
            entries: list[Any] = []
            for _, per in sorted(packages.items()):
                by_spec: dict[str, list[str]] = {}
                for platform in self.platforms:
                    if platform in per:
                        by_spec.setdefault(per[platform], []).append(platform)
                for spec, where in by_spec.items():
                    plain = where == self.platforms
                    entries.append(spec if plain else {"name": spec, "platforms": where})
            if entries:
                out[layer] = entries
        if self.channels != default_channels:
            out["channels"] = self.channels
        out["platforms"] = self.platforms
        if self.variables:
            out["variables"] = self.variables
        return out


def from_pixi(path: Path, target: Path) -> Imported:
    """The envs of a pixi manifest: features composed into each of its ``environments``."""
    doc = _toml(path)
    table: Mapping[str, Any] | None = doc
    if path.name == "pyproject.toml":
        table = (doc.get("tool") or {}).get("pixi")
        if table is None:
            raise SpecError(
                "this pyproject.toml has no [tool.pixi] table",
                file=path,
                hint="list the requirements in a requirements.txt and import that instead.",
            )
    assert table is not None
    workspace = table.get("workspace") or table.get("project") or {}
    channels = [
        rebase_channel(str(c["channel"] if isinstance(c, Mapping) else c), path, target)
        for c in workspace.get("channels") or []
    ]
    platforms = [str(p) for p in workspace.get("platforms") or [current_platform()]]
    project_deps: list[str] = []
    if path.name == "pyproject.toml":  # pixi installs `project.dependencies` from PyPI
        for text in (doc.get("project") or {}).get("dependencies") or []:
            project_deps.append(check_pip(str(text), file=path, line=None))
    features = table.get("feature") or {}
    declared = dict(table.get("environments") or {})
    declared.setdefault("default", [])
    imported = Imported(source=path, channels=channels or None, platforms=platforms)
    for name, given in declared.items():
        how = {"features": given} if isinstance(given, list) else given
        env = _Env(list(platforms))
        env.channels = list(channels)
        if not how.get("no-default-feature", False):
            env.add(table, file=path, where="")
            env.requirements(project_deps)
        for feature in how.get("features") or []:
            if feature not in features:
                raise SpecError(
                    f"environment {name!r} uses feature {feature!r}, which is not declared",
                    file=path,
                    key=f"environments.{name}",
                    hint=f"add a [feature.{feature}] table, or remove it from the environment.",
                )
            env.add(features[feature], file=path, where=f"feature.{feature}.")
        if not _NAME_OK.match(str(name)):
            raise SpecError(f"{name!r} cannot be a Cema environment name", file=path)
        imported.envs[str(name)] = env.body(default_channels=channels)
    return imported


__all__ = ["from_pixi"]
