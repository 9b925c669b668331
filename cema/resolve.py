"""Spec → lock: the conda layer through the ``Solver`` seam, the pip layer through uv."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from cema.engines import uv
from cema.engines.builder import NullReporter, Reporter, each_solve
from cema.engines.precheck import check_envs
from cema.engines.pypi_names import pypi_name
from cema.engines.solver import Solver
from cema.errors import CemaError, SolveError
from cema.model.hashing import spec_hash
from cema.model.lock import (
    CondaRecord,
    LockedEnv,
    LockedPlatform,
    Lockfile,
    PipRecord,
    commands_environment,
    with_spec_fields,
)
from cema.model.spec import Dependency, EnvSpec, ProjectSpec, iter_envs, version_request
from cema.model.urls import channel_location, local_folder

log = logging.getLogger(__name__)
T = TypeVar("T")
_PLAIN_VERSION = re.compile(r"^\d+(\.\d+)*$")


def conda_specs(env: EnvSpec, platform: str | None = None) -> list[str]:
    """The env's conda specs (on ``platform``), with its ``python`` constraint as a spec."""
    entries = env.conda if platform is None else env.conda_for(platform)
    specs = [d.spec for d in entries]
    if env.python and not any(re.match(r"^python(\s|[=<>!~]|$)", s) for s in specs):
        version = env.python.strip()
        specs.append(f"python={version}" if _PLAIN_VERSION.match(version) else f"python {version}")
    return specs


def _python_packages(records: Sequence[CondaRecord]) -> dict[str, CondaRecord]:
    """Conda records that are Python distributions, by the PyPI name of what they install.

    The pip layer must not replace them: conda ``msgpack-python`` installs PyPI ``msgpack``.
    """
    out: dict[str, CondaRecord] = {}
    for r in records:
        if r.name != "python" and (
            r.noarch == "python" or any(d.split()[0] == "python" for d in r.depends)
        ):
            out.setdefault(pypi_name(r.name), r)
    return out


def _conda_satisfies(req: Requirement, version: str) -> bool:
    """Whether the conda ``version`` meets ``req``'s specifier (an unreadable one: unknown, yes)."""
    try:
        return req.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        log.warning(
            "cannot compare the conda version %s with %r: taken as meeting it", version, req
        )
        return True


def _without_conda_provided(
    entries: Sequence[Dependency], provided: Mapping[str, CondaRecord], *, where: str
) -> tuple[list[Dependency], list[str]]:
    """The pip entries left once those naming a distribution the conda layer installs are out.

    Such an entry is dropped when the conda version meets it (kept, for uv to resolve its
    extras, when it has some: the distribution itself stays conda's) and refused when not (an
    optional one is left out), since pip would write over conda's files. Entries with markers
    are left to uv, which resolves them against the conda version as a constraint.
    """
    kept: list[Dependency] = []
    omitted: list[str] = []
    for dep in entries:
        try:
            req = Requirement(dep.spec)
        except InvalidRequirement:
            kept.append(dep)
            continue
        rec = provided.get(canonicalize_name(req.name))
        if rec is None or req.marker is not None:
            kept.append(dep)
            continue
        if req.url is None and _conda_satisfies(req, rec.version):
            log.warning(
                "the pip entry %r is left out %s: the conda package %s %s installs %s",
                dep.spec,
                where,
                rec.name,
                rec.version,
                req.name,
            )
            if req.extras:
                kept.append(dep)
            continue
        if req.url:
            problem = SolveError(
                f"the pip entry {dep.spec!r} {where} installs {req.name}, which the conda"
                f" package {rec.name} {rec.version} installs already.",
                hint=f"drop the pip entry or the conda package {rec.name}: one distribution"
                " cannot come from both conda and pip.",
            )
        else:
            problem = SolveError(
                f"the pip entry {dep.spec!r} {where} does not allow the {req.name}"
                f" {rec.version} that the conda package {rec.name} installs.",
                hint=f"drop the pip entry, or change the conda spec of {rec.name} to a version"
                " it allows: one distribution cannot come from both conda and pip.",
            )
        if not dep.optional:
            raise problem
        log.warning("leaving out the optional %r %s: %s", dep.spec, where, problem.message)
        omitted.append(dep.spec)
    return kept, omitted


def _with_optional(
    resolve: Callable[[list[Dependency]], T],
    entries: Sequence[Dependency],
    *,
    where: str,
) -> tuple[T, list[str]]:
    """Resolve ``entries``; where that fails, leave out ``optional`` ones that cannot be had.

    The required entries alone must resolve; optional ones are then added back one at a time
    and each one that breaks the resolution is left out (with a warning).
    """
    try:
        return resolve(list(entries)), []
    except SolveError:
        if not any(d.optional for d in entries):
            raise
    kept = [d for d in entries if not d.optional]
    result = resolve(kept)
    omitted: list[str] = []
    for dep in (d for d in entries if d.optional):
        try:
            result = resolve([*kept, dep])
            kept.append(dep)
        except SolveError as exc:
            log.warning("leaving out the optional %r %s: %s", dep.spec, where, exc.message)
            omitted.append(dep.spec)
    return result, omitted


def _qualified_channels(specs: Sequence[str]) -> list[str]:
    """Channels named in ``channel::name`` specs (the solver must read them too)."""
    return [s.split("::", 1)[0].strip() for s in specs if "::" in s]


def _lock_conda_platform(
    env: EnvSpec,
    platform: str,
    *,
    solver: Solver,
    root: Path,
    locked: Sequence[CondaRecord],
    previous_pip: Sequence[PipRecord] = (),
) -> LockedPlatform:
    entries = env.conda_for(platform)
    specs_all = [d.spec for d in entries]
    channels = list(
        dict.fromkeys(
            channel_location(c, root) for c in (*env.channels, *_qualified_channels(specs_all))
        )
    )
    for channel in channels:
        folder = local_folder(channel)
        if folder is not None and not folder.is_dir():
            raise SolveError(
                f"the channel folder {folder} does not exist.",
                hint="check `channels:` in cema.yaml (relative paths start from its folder).",
            )
    where = f"on {platform}"
    with_deps = [d for d in entries if d.dependencies]
    python = conda_specs(replace(env, conda=()), platform)  # the `python:` constraint alone

    def solve(deps: list[Dependency]) -> list[CondaRecord]:
        return solver.solve(
            specs=[d.spec for d in deps] + python,
            channels=channels,
            platform=platform,
            locked=locked,
        )

    conda, omitted = _with_optional(solve, with_deps, where=where)
    by_name = {r.name: r for r in conda}
    for dep in (d for d in entries if not d.dependencies):
        found = solver.find(
            spec=dep.spec,
            channels=channels,
            platform=platform,
            locked=[r for r in locked if r.no_deps],
        )
        if found is None:
            if dep.optional:
                log.warning("leaving out the optional %r %s: no package matches", dep.spec, where)
                omitted.append(dep.spec)
                continue
            raise SolveError(
                f"no package matches {dep.spec!r} for {platform} in {', '.join(channels)}.",
                hint="check the name and version, or mark the entry `optional: true`.",
            )
        by_name[found.name] = replace(found, no_deps=True)
    records = sorted(by_name.values(), key=lambda r: r.name)
    pip: list[PipRecord] = []
    if env.pip_for(platform):
        version = next((r.version for r in records if r.name == "python"), None)
        if version is None:
            raise SolveError(
                f"environment {env.name!r} has pip dependencies but no python.",
                hint='add `python: "3.11"` (or a `python` conda spec) to the environment.',
            )
        pip, pip_omitted = _lock_pip(
            env,
            platform,
            python_version=version,
            conda=_python_packages(records),
            previous=previous_pip,
        )
        omitted += pip_omitted
    return LockedPlatform(
        platform=platform,
        kind="conda",
        conda=tuple(records),
        pip=tuple(pip),
        omitted=tuple(omitted),
        commands=env.commands_for(platform),
        commands_env=commands_environment(env.name, env.variables),
    )


def _lock_pip(
    env: EnvSpec,
    platform: str,
    *,
    python_version: str,
    conda: Mapping[str, CondaRecord] | None = None,
    previous: Sequence[PipRecord] = (),
) -> tuple[list[PipRecord], list[str]]:
    """The pip layer on ``platform``: entries with their dependencies together, others alone.

    ``conda`` holds the distributions the conda layer installs (by PyPI name): entries naming
    them are dropped or refused, and uv keeps them as they are. Versions locked before are kept
    where they still fit (tried first as pins).
    """
    where = f"on {platform}"
    conda = conda or {}
    entries, omitted_first = _without_conda_provided(env.pip_for(platform), conda, where=where)
    provided = {name: rec.version for name, rec in conda.items()}
    prefer = {r.name: r.version for r in previous if not r.no_deps}

    def compile_(deps: list[Dependency]) -> list[PipRecord]:
        specs = [d.spec for d in deps]
        common: dict[str, Any] = {
            "python_version": python_version,
            "platform": platform,
            "provided": provided,
            "pypi": env.pypi_options,
        }
        if prefer:
            try:
                return uv.compile_pip(specs, prefer=prefer, **common)
            except SolveError:
                log.info("the pip versions locked before no longer fit %s: resolving anew", where)
        return uv.compile_pip(specs, **common)

    records, omitted = _with_optional(compile_, [d for d in entries if d.dependencies], where=where)
    omitted = omitted_first + omitted
    by_name = {r.name: r for r in records}
    for dep in (d for d in entries if not d.dependencies):

        def alone(deps: list[Dependency]) -> list[PipRecord]:
            return [
                r
                for d in deps
                for r in uv.compile_pip(
                    [d.spec],
                    python_version=python_version,
                    platform=platform,
                    provided=provided,
                    no_deps=True,
                    pypi=env.pypi_options,
                )
            ]

        found, left_out = _with_optional(alone, [dep], where=where)
        omitted += left_out
        by_name.update({r.name: r for r in found})
    return sorted(by_name.values(), key=lambda r: r.name), omitted


def _lock_conda_env(
    env: EnvSpec, *, solver: Solver, root: Path, previous: LockedEnv | None, reporter: Reporter
) -> LockedEnv:
    platforms = {}
    for platform in each_solve(reporter, env.name, env.platforms):
        locked = (
            previous.platforms[platform].conda
            if previous and platform in previous.platforms
            else ()
        )
        before = previous.platforms.get(platform) if previous else None
        platforms[platform] = _lock_conda_platform(
            env,
            platform,
            solver=solver,
            root=root,
            locked=locked,
            previous_pip=before.pip if before else (),
        )
    return LockedEnv(
        name=env.name,
        spec_hash=spec_hash(env),
        kind="conda",
        variables=env.variables,
        platforms=platforms,
    )


def venv_python_version(env: EnvSpec, kept: str | None = None) -> str:
    """The ``X.Y`` a pip-only env is locked for: its ``python`` if plain, else ``kept`` (locked
    before) while ``python`` allows it, else the newest local match (said so: kept on re-lock)."""
    if env.python and _PLAIN_VERSION.match(env.python.strip()):
        return ".".join(env.python.strip().split(".")[:2])
    allowed = version_request(env.python)
    if kept and _PLAIN_VERSION.match(kept) and any(f"{kept}.{p}" in allowed for p in range(64)):
        return kept  # a re-lock on another machine, or a bare --upgrade, does not flip it
    # locking never downloads an interpreter: a range picks the newest one on this machine
    found = ".".join(uv.find_interpreter(env.python, download=False).version.split(".")[:2])
    log.warning(
        "environment %r is locked for python %s, the newest python%s on this machine; it is"
        " kept on re-lock (`cema lock --upgrade %s` chooses again)",
        *(env.name, found, f" matching {env.python!r}" if env.python else "", env.name),
    )
    return found


def _lock_venv_env(
    env: EnvSpec, previous: LockedEnv | None, kept: str | None, reporter: Reporter | None
) -> LockedEnv:
    python = venv_python_version(env, kept)
    platforms = {}
    for platform in each_solve(reporter, env.name, env.platforms):
        before = previous.platforms.get(platform) if previous else None
        pip, omitted = _lock_pip(
            env, platform, python_version=python, previous=before.pip if before else ()
        )
        platforms[platform] = LockedPlatform(
            platform=platform,
            kind="venv",
            pip=tuple(pip),
            omitted=tuple(omitted),
            commands=env.commands_for(platform),
            commands_env=commands_environment(env.name, env.variables),
        )
    return LockedEnv(
        name=env.name,
        spec_hash=spec_hash(env),
        kind="venv",
        python=python,
        variables=env.variables,
        platforms=platforms,
    )


def lock_env(
    env: EnvSpec,
    *,
    solver: Solver,
    root: Path,
    previous: LockedEnv | None = None,
    python: str | None = None,
    reporter: Reporter | None = None,
) -> LockedEnv:
    """Resolve one env for every platform it lists (``python``: a pip-only env's python locked
    before, kept while its spec allows it; default: ``previous``'s; ``reporter``: progress)."""
    log.info("resolving %s (%s) for %s", env.name, env.resolved_kind, ", ".join(env.platforms))
    reporter = reporter or NullReporter()
    try:
        if env.resolved_kind == "venv":
            kept = python or (previous.python if previous else None)
            return _lock_venv_env(env, previous, kept, reporter)
        return _lock_conda_env(env, solver=solver, root=root, previous=previous, reporter=reporter)
    except CemaError as exc:
        if f"{env.name!r}" in exc.message:
            raise
        raise type(exc)(
            f"environment {env.name!r}: {exc.message}", hint=exc.hint
        ) from exc.__cause__


def lock_project(
    project: ProjectSpec,
    *,
    solver: Solver,
    previous: Lockfile | None = None,
    names: Sequence[str] = (),
    upgrade: Sequence[str] | bool = False,
    reporter: Reporter | None = None,
) -> Lockfile:
    """A lock for the project: unchanged envs keep their records, others are resolved again.

    ``names`` limits which envs are (re)resolved (others keep their records), ``upgrade``
    re-resolves envs even when unchanged (True: all of them).
    """
    previous = previous or Lockfile()
    selected = {e.name for e in iter_envs(project, names)}
    if not isinstance(upgrade, bool):
        for name in upgrade:
            project.env(name)  # an unknown name fails with a suggestion
    out: list[LockedEnv] = []
    todo: list[tuple[EnvSpec, LockedEnv | None]] = []
    pythons: dict[str, str | None] = {}
    for env in iter_envs(project):
        old = previous.envs.get(env.name)
        forced = upgrade is True or (not isinstance(upgrade, bool) and env.name in upgrade)
        fresh = old is not None and old.spec_hash == spec_hash(env)
        if env.name not in selected:
            if old is not None:  # not asked for: kept as it is (stale or not), never resolved
                out.append(old)
            continue
        if old is not None and fresh and not forced:
            out.append(with_spec_fields(old, env))  # new variables alone need no solve
            continue
        # a bare --upgrade keeps the python a pip-only env was locked for; naming the env not
        if old is not None and old.kind == "venv" and (upgrade is True or not forced):
            pythons[env.name] = old.python
        todo.append((env, None if forced else old))
    # every spec to resolve is checked first: a typo fails at its line, before any solve
    check_envs((env for env, _ in todo), file=project.path)
    lock_one = partial(lock_env, solver=solver, root=project.root, reporter=reporter)
    for env, old in todo:
        out.append(lock_one(env, previous=old, python=pythons.get(env.name)))
    return previous.with_envs(out)
