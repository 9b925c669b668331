"""Spec → lock: the conda layer through the engine's solver, the pip layer through uv."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from cema.engines import uv
from cema.engines.base import Engine
from cema.errors import CemaError, SolveError
from cema.hashing import spec_hash
from cema.lock import CondaRecord, LockedEnv, LockedPlatform, Lockfile, PipRecord
from cema.spec import EnvSpec, ProjectSpec, iter_envs

log = logging.getLogger(__name__)
_PLAIN_VERSION = re.compile(r"^\d+(\.\d+)*$")


def channel_location(channel: str, root: Path) -> str:
    """A channel as the solver takes it: names and URLs as they are, paths made absolute."""
    if channel.startswith("file://") or (
        "://" not in channel
        and (channel.startswith((".", "/", "~")) or re.match(r"^[A-Za-z]:[\\/]", channel))
    ):
        if channel.startswith("file://"):
            return channel
        return str((root / Path(channel).expanduser()).resolve())
    return channel


def conda_specs(env: EnvSpec) -> list[str]:
    """The env's conda specs, with its ``python`` constraint as a ``python`` spec."""
    specs = list(env.conda)
    if env.python and not any(re.match(r"^python(\s|[=<>!~]|$)", s) for s in specs):
        version = env.python.strip()
        specs.append(f"python={version}" if _PLAIN_VERSION.match(version) else f"python {version}")
    return specs


def _python_packages(records: Sequence[CondaRecord]) -> dict[str, str]:
    """Conda records that are Python distributions (the pip layer must not replace them)."""
    return {
        r.name: r.version
        for r in records
        if r.noarch == "python"
        or (any(d.split()[0] == "python" for d in r.depends) and r.name != "python")
    }


def _lock_conda_env(
    env: EnvSpec, *, engine: Engine, root: Path, previous: LockedEnv | None
) -> LockedEnv:
    channels = [channel_location(c, root) for c in env.channels]
    platforms = {}
    for platform in env.platforms:
        locked = (
            previous.platforms[platform].conda
            if previous and platform in previous.platforms
            else ()
        )
        conda = engine.solve(
            specs=conda_specs(env), channels=channels, platform=platform, locked=locked
        )
        pip: list[PipRecord] = []
        if env.pip:
            python = next((r.version for r in conda if r.name == "python"), None)
            if python is None:
                raise SolveError(
                    f"environment {env.name!r} has pip dependencies but no python.",
                    hint='add `python: "3.11"` (or a `python` conda spec) to the environment.',
                )
            pip = uv.compile_pip(
                env.pip, python_version=python, platform=platform, provided=_python_packages(conda)
            )
        platforms[platform] = LockedPlatform(
            platform=platform, kind="conda", conda=tuple(conda), pip=tuple(pip)
        )
    return LockedEnv(name=env.name, spec_hash=spec_hash(env), kind="conda", platforms=platforms)


def venv_python_version(env: EnvSpec) -> str:
    """The ``X.Y`` a pip-only env is locked for: its ``python`` if plain, else a local match."""
    if env.python and _PLAIN_VERSION.match(env.python.strip()):
        return ".".join(env.python.strip().split(".")[:2])
    # locking never downloads an interpreter: a range picks the newest one on this machine
    found = uv.find_interpreter(env.python, download=False)
    return ".".join(found.version.split(".")[:2])


def _lock_venv_env(env: EnvSpec) -> LockedEnv:
    python = venv_python_version(env)
    platforms = {
        platform: LockedPlatform(
            platform=platform,
            kind="venv",
            pip=tuple(uv.compile_pip(env.pip, python_version=python, platform=platform)),
        )
        for platform in env.platforms
    }
    return LockedEnv(
        name=env.name, spec_hash=spec_hash(env), kind="venv", python=python, platforms=platforms
    )


def lock_env(
    env: EnvSpec, *, engine: Engine, root: Path, previous: LockedEnv | None = None
) -> LockedEnv:
    """Resolve one env for every platform it lists."""
    log.info("resolving %s (%s) for %s", env.name, env.resolved_kind, ", ".join(env.platforms))
    try:
        if env.resolved_kind == "venv":
            return _lock_venv_env(env)
        return _lock_conda_env(env, engine=engine, root=root, previous=previous)
    except CemaError as exc:
        if f"{env.name!r}" in exc.message:
            raise
        raise type(exc)(
            f"environment {env.name!r}: {exc.message}", hint=exc.hint
        ) from exc.__cause__


def lock_project(
    project: ProjectSpec,
    *,
    engine: Engine,
    previous: Lockfile | None = None,
    names: Sequence[str] = (),
    upgrade: Sequence[str] | bool = False,
) -> Lockfile:
    """A lock for the project: unchanged envs keep their records, others are resolved again.

    ``names`` limits which envs are (re)resolved (others keep their records), ``upgrade``
    re-resolves envs even when unchanged (True: all of them).
    """
    previous = previous or Lockfile()
    selected = {e.name for e in iter_envs(project, names)}
    out: list[LockedEnv] = []
    for env in iter_envs(project):
        old = previous.envs.get(env.name)
        forced = upgrade is True or (not isinstance(upgrade, bool) and env.name in upgrade)
        fresh = old is not None and old.spec_hash == spec_hash(env)
        if old is not None and (env.name not in selected or (fresh and not forced)):
            out.append(old)
            continue
        out.append(
            lock_env(env, engine=engine, root=project.root, previous=None if forced else old)
        )
    return previous.with_envs(out)
