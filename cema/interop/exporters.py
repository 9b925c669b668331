"""A locked env written as other tools' files: explicit, environment.yml, conda-lock, pip locks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from urllib.parse import unquote, urlparse

from cema.errors import CemaError, LockError
from cema.interop.importers import PYPI_FILES, pip_pin
from cema.model.lock import CondaRecord, LockedEnv, LockedPlatform, Lockfile, PipRecord
from cema.model.spec import EnvSpec, current_platform
from cema.model.urls import redact_url

_CONDA_DEP = re.compile(r"^(?P<name>[^\s=<>!~\[]+)\s*(?P<rest>.*)$")


def pick_env(lock: Lockfile, name: str | None) -> LockedEnv:
    """The env to export: ``name``, else the lock's only env."""
    if name is not None:
        return lock.env(name)
    if len(lock.envs) == 1:
        return next(iter(lock.envs.values()))
    names = ", ".join(sorted(lock.envs)) or "none"
    raise CemaError(
        f"the lock holds several environments ({names}): which one to export?",
        hint="pass -e NAME.",
    )


def pick_platforms(env: LockedEnv, platform: str | None, *, every: bool = False) -> list[str]:
    """The platforms to export: ``platform``; else all (``every``), this machine's or the only."""
    if platform is not None:
        env.for_platform(platform)  # the error names the locked ones
        return [platform]
    locked = sorted(env.platforms)
    if every and locked:
        return locked
    here = current_platform()
    if here in env.platforms:
        return [here]
    if len(locked) == 1:
        return locked
    raise CemaError(
        f"environment {env.name!r} is locked for {', '.join(locked) or 'no platform'},"
        f" not for this machine ({here}): which platform to export?",
        hint="pass --platform PLATFORM.",
    )


def export_env(
    lock: Lockfile,
    fmt: str,
    *,
    env: str | None = None,
    platform: str | None = None,
    spec: EnvSpec | None = None,
) -> str:
    """The text of ``lock``'s env ``env`` on ``platform`` in format ``fmt`` (no solving)."""
    locked = pick_env(lock, env)
    platforms = pick_platforms(locked, platform, every=fmt == "conda-lock")
    content = [locked.platforms[p] for p in platforms]
    if fmt == "explicit":
        return explicit(locked, content[0])
    if fmt == "environment-yml":
        return environment_yml(locked, content[0], spec=spec)
    if fmt == "conda-lock":
        return conda_lock(locked, content)
    if fmt == "requirements":
        return requirements(locked, content[0])
    if fmt == "pylock":
        return pylock(locked, content[0])
    raise CemaError(
        f"{fmt!r} is not an export format.",
        hint="use explicit, environment-yml, conda-lock, requirements or pylock.",
    )


def _header(env: LockedEnv, content: LockedPlatform, what: str) -> list[str]:
    return [
        f"# {what} of environment {env.name!r} on {content.platform},"
        " written by `cema export` from cema.lock.",
    ]


def _need_conda(env: LockedEnv, content: LockedPlatform, fmt: str) -> None:
    if not content.conda:
        raise LockError(
            f"environment {env.name!r} has no conda packages on {content.platform}"
            f" ({env.kind}): there is nothing to write as {fmt}.",
            hint="export its pip layer with --format requirements or --format pylock.",
        )


def _need_pip(env: LockedEnv, content: LockedPlatform, fmt: str) -> None:
    if not content.pip:
        raise LockError(
            f"environment {env.name!r} has no pip packages on {content.platform}:"
            f" there is nothing to write as {fmt}.",
            hint="export its conda layer with --format explicit, environment-yml or conda-lock.",
        )


# --- conda ----------------------------------------------------------------------------------


def explicit(env: LockedEnv, content: LockedPlatform) -> str:
    """A conda explicit file: ``@EXPLICIT``, then each package URL with ``#sha256:``."""
    _need_conda(env, content, "an explicit file")
    lines = [
        *_header(env, content, "The conda packages"),
        f"# create it with: conda create --name {env.name} --file THIS_FILE",
        f"# platform: {content.platform}",
        "@EXPLICIT",
    ]
    lines += [f"{redact_url(r.url)}#sha256:{r.sha256}" for r in content.conda]
    return "\n".join(lines) + "\n"


def _channels(records: Iterable[CondaRecord]) -> list[str]:
    seen: dict[str, None] = {}
    for record in records:
        seen.setdefault(redact_url(record.channel).rstrip("/"), None)
    return list(seen)


def _pip_pin(record: PipRecord) -> str:
    return pip_pin(record.name, record.version, record.url)


def environment_yml(env: LockedEnv, content: LockedPlatform, *, spec: EnvSpec | None) -> str:
    """An ``environment.yml`` with exact pins (``name=version=build``) and the pip sublist."""
    import yaml

    deps: list[object] = [f"{r.name}={r.version}={r.build}" for r in content.conda]
    if not content.conda and env.python:
        deps.append(f"python={env.python}")  # a venv: its interpreter as a conda package
    if content.pip:
        if not any(r.name == "pip" for r in content.conda):
            deps.append("pip")
        deps.append({"pip": [_pip_pin(r) for r in content.pip]})
    doc: dict[str, object] = {
        "name": env.name,
        "channels": _channels(content.conda) or list(spec.channels if spec else ()),
        "dependencies": deps,
    }
    if spec is not None and spec.variables:
        doc["variables"] = dict(spec.variables)
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)
    return "\n".join(_header(env, content, "The exact packages")) + "\n" + body


def _depends(depends: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for dep in depends:
        match = _CONDA_DEP.match(dep.split("::", 1)[-1].strip())
        if match:
            rest = match.group("rest").strip() or "*"
            name = match.group("name")
            out[name] = f"{out[name]},{rest}" if name in out and rest != "*" else rest
    return out


def conda_lock(env: LockedEnv, contents: Sequence[LockedPlatform]) -> str:
    """A ``conda-lock.yml`` (format version 1, as ``conda-lock install`` reads) of ``contents``."""
    import yaml

    packages: list[dict[str, object]] = []
    channels: dict[str, None] = {}
    for content in contents:
        for r in content.conda:
            if not r.md5:
                raise LockError(
                    f"{r.name} {r.version} on {content.platform} has no md5 in the lock,"
                    " and conda-lock files need one.",
                    hint="run `cema lock --upgrade` against a channel whose repodata has md5s.",
                )
            channels.update(dict.fromkeys(_channels([r])))
            packages.append(
                {
                    "name": r.name,
                    "version": r.version,
                    "manager": "conda",
                    "platform": content.platform,
                    "dependencies": _depends(r.depends),
                    "url": redact_url(r.url),
                    "hash": {"md5": r.md5, "sha256": r.sha256},
                    "category": "main",
                    "optional": False,
                }
            )
        for p in content.pip:
            packages.append(
                {
                    "name": p.name,
                    "version": p.version,
                    "manager": "pip",
                    "platform": content.platform,
                    "dependencies": {},
                    "url": redact_url(p.url),
                    "hash": {"sha256": p.sha256},
                    "category": "main",
                    "optional": False,
                }
            )
    doc = {
        "version": 1,
        "metadata": {
            "content_hash": {c.platform: c.content_hash for c in contents},
            "channels": [{"url": c, "used_env_vars": []} for c in channels],
            "platforms": [c.platform for c in contents],
            "sources": ["cema.yaml"],
        },
        "package": packages,
    }
    head = [
        f"# The exact packages of environment {env.name!r}, written by `cema export` from"
        " cema.lock.",
        f"# install it with: conda-lock install --name {env.name} THIS_FILE",
    ]
    return "\n".join(head) + "\n" + yaml.safe_dump(doc, sort_keys=False, width=1000)


# --- pip ------------------------------------------------------------------------------------


def requirements(env: LockedEnv, content: LockedPlatform) -> str:
    """A ``requirements.txt`` of the pip layer, every line with its ``--hash=sha256:``."""
    _need_pip(env, content, "a requirements file")
    lines = [
        *_header(env, content, "The pip layer"),
        "# install it with: pip install --no-deps --require-hashes -r THIS_FILE",
    ]
    for record in content.pip:
        lines.append(f"{_pip_pin(record)} \\\n    --hash=sha256:{record.sha256}")
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def _file_name(url: str) -> str:
    return unquote(urlparse(url).path.rstrip("/").rsplit("/", 1)[-1])


def pylock(env: LockedEnv, content: LockedPlatform) -> str:
    """A PEP 751 ``pylock.toml`` of the pip layer (one platform's packages)."""
    from packaging.utils import canonicalize_name

    _need_pip(env, content, "a pylock.toml")
    lines = [
        *_header(env, content, "The pip layer"),
        'lock-version = "1.0"',
        'created-by = "cema"',
    ]
    if env.python and re.fullmatch(r"\d+\.\d+(\.\d+)?", env.python):
        star = ".*" if env.python.count(".") == 1 else ""
        lines.append(f"requires-python = {_toml('==' + env.python + star)}")
    for record in content.pip:
        url = redact_url(record.url)
        name = _file_name(url)
        archive = {"url": url, "hashes": {"sha256": record.sha256}}
        lines += [
            "",
            "[[packages]]",
            f"name = {_toml(str(canonicalize_name(record.name)))}",
            f"version = {_toml(record.version)}",
        ]
        if urlparse(url).hostname in PYPI_FILES:
            lines.append('index = "https://pypi.org/simple"')
        if name.endswith(".whl"):
            lines.append(f"wheels = [{_toml({'name': name, **archive})}]")
        elif name.endswith((".tar.gz", ".zip")):
            lines.append(f"sdist = {_toml({'name': name, **archive})}")
        else:
            lines.append(f"archive = {_toml(archive)}")
    return "\n".join(lines) + "\n"


__all__ = [
    "conda_lock",
    "environment_yml",
    "explicit",
    "export_env",
    "pick_env",
    "pick_platforms",
    "pylock",
    "requirements",
]
