"""The lock model: exact records per env and platform, and whether the lock is still fresh."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cema.errors import LockError, StaleLockError
from cema.model.hashing import content_hash, spec_hash
from cema.model.spec import ProjectSpec

LOCK_FILENAME = "cema.lock"
LOCK_VERSION = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class CondaRecord:
    """One conda package, with all a prefix needs to install it without solving."""

    name: str
    version: str
    build: str
    build_number: int
    subdir: str
    channel: str
    url: str
    sha256: str
    md5: str | None = None
    size: int | None = None
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    noarch: str | None = None
    timestamp: int | None = None
    #: installed without its dependencies (a ``dependencies: false`` entry)
    no_deps: bool = False

    @property
    def file_name(self) -> str:
        """The archive's file name, from its URL."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    def as_dict(self) -> dict[str, Any]:
        """The record as written to the lock (optional fields only when set)."""
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "subdir": self.subdir,
        }
        if self.noarch:
            out["noarch"] = self.noarch
        out["depends"] = list(self.depends)
        out["constrains"] = list(self.constrains)
        out["channel"] = self.channel
        out["url"] = self.url
        out["sha256"] = self.sha256
        if self.md5:
            out["md5"] = self.md5
        if self.size is not None:
            out["size"] = self.size
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        if self.no_deps:
            out["no_deps"] = True
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class PipRecord:
    """One Python distribution installed by uv after the conda layer."""

    name: str
    version: str
    url: str
    sha256: str
    #: installed without its dependencies (a ``dependencies: false`` entry)
    no_deps: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The record as written to the lock."""
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "url": self.url,
            "sha256": self.sha256,
        }
        if self.no_deps:
            out["no_deps"] = True
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class LockedPlatform:
    """The exact content of one env on one platform."""

    platform: str
    kind: str
    conda: tuple[CondaRecord, ...] = ()
    pip: tuple[PipRecord, ...] = ()
    #: ``optional`` entries that could not be resolved for this platform (not retried)
    omitted: tuple[str, ...] = ()
    #: ``install_commands`` that run on this platform, in order (part of the content)
    commands: tuple[str, ...] = ()

    @property
    def content_hash(self) -> str:
        """The hash of the locked content (the prefix address, interpreter aside for venvs)."""
        return content_hash(
            kind=self.kind,
            platform=self.platform,
            conda=(r.as_dict() for r in self.conda),
            pip=(r.as_dict() for r in self.pip),
            commands=self.commands,
        )

    def python_version(self) -> str | None:
        """The version of the locked ``python`` conda package, if any."""
        return next((r.version for r in self.conda if r.name == "python"), None)


@dataclass(frozen=True, kw_only=True, slots=True)
class LockedEnv:
    """One env of the lock: the spec hash it was resolved from and its content per platform."""

    name: str
    spec_hash: str
    kind: str
    python: str | None = None
    platforms: Mapping[str, LockedPlatform] = field(default_factory=dict)

    def for_platform(self, platform: str) -> LockedPlatform:
        """The content for ``platform``, or a ``LockError`` saying it was not locked for it."""
        try:
            return self.platforms[platform]
        except KeyError:
            locked = ", ".join(sorted(self.platforms)) or "none"
            raise LockError(
                f"environment {self.name!r} is not locked for {platform} (locked: {locked}).",
                hint=f"add {platform} to its `platforms` in cema.yaml and run `cema lock`.",
            ) from None


@dataclass(frozen=True, kw_only=True, slots=True)
class Lockfile:
    """A whole ``cema.lock``."""

    path: Path | None = None
    envs: Mapping[str, LockedEnv] = field(default_factory=dict)

    def env(self, name: str) -> LockedEnv:
        """The locked env called ``name``, or a ``LockError`` with a hint to lock it."""
        try:
            return self.envs[name]
        except KeyError:
            raise LockError(
                f"environment {name!r} is not in {self.path or 'the lock'}.",
                hint="run `cema lock` to resolve it.",
            ) from None

    def with_envs(self, envs: Iterable[LockedEnv]) -> Lockfile:
        """A copy holding exactly ``envs``."""
        return replace(self, envs={e.name: e for e in sorted(envs, key=lambda e: e.name)})


# --- freshness ------------------------------------------------------------------------------


def stale_envs(project: ProjectSpec, lock: Lockfile, names: Sequence[str] = ()) -> list[str]:
    """Names of envs whose spec changed since the lock (or that the lock lacks)."""
    wanted = names or sorted(project.environments)
    stale = []
    for name in wanted:
        env = project.env(name)
        locked = lock.envs.get(name)
        if locked is None or locked.spec_hash != spec_hash(env):
            stale.append(name)
    return stale


def check_fresh(project: ProjectSpec, lock: Lockfile, names: Sequence[str] = ()) -> None:
    """Raise ``StaleLockError`` when ``cema.yaml`` changed since ``cema.lock`` was written."""
    stale = stale_envs(project, lock, names)
    extra = [] if names else sorted(set(lock.envs) - set(project.environments))
    if stale or extra:
        parts = []
        if stale:
            parts.append(f"changed or new in cema.yaml: {', '.join(stale)}")
        if extra:
            parts.append(f"no longer declared: {', '.join(extra)}")
        raise StaleLockError(
            f"{lock.path or 'the lock'} is out of date ({'; '.join(parts)}).",
            hint="run `cema lock` and commit cema.lock.",
        )


__all__ = [
    "LOCK_FILENAME",
    "LOCK_VERSION",
    "CondaRecord",
    "LockedEnv",
    "LockedPlatform",
    "Lockfile",
    "PipRecord",
    "check_fresh",
    "stale_envs",
]
