"""The lock model: exact records per env and platform, and whether the lock is still fresh."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cema.errors import LockError, StaleLockError
from cema.model.hashing import content_hash, records_hash, spec_hash
from cema.model.spec import EnvSpec, ProjectSpec

LOCK_FILENAME = "cema.lock"
LOCK_VERSION = 1
#: the key of each platform's integrity hash in ``cema.lock`` (every field of every record)
RECORDS_HASH = "records-hash"


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


class LockedPlatform:
    """The exact content of one env on one platform (immutable).

    A lock read back from its checked cache builds its records only when they are asked for:
    a no-op ``cema sync`` needs the content hash (stored in the lock, checked when the lock was
    first read) and each package's version, not 5,000 record objects.
    """

    __slots__ = (
        "_commands",
        "_commands_env",
        "_conda",
        "_hash",
        "_kind",
        "_load",
        "_omitted",
        "_pip",
        "_platform",
    )

    def __init__(
        self,
        *,
        platform: str,
        kind: str,
        conda: Iterable[CondaRecord] = (),
        pip: Iterable[PipRecord] = (),
        omitted: Iterable[str] = (),
        commands: Iterable[str] = (),
        commands_env: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._platform = platform
        self._kind = kind
        self._conda: tuple[CondaRecord, ...] | None = tuple(conda)
        self._pip: tuple[PipRecord, ...] | None = tuple(pip)
        #: ``optional`` entries that could not be resolved for this platform (not retried)
        self._omitted = tuple(omitted)
        #: ``install_commands`` that run on this platform, in order (part of the content)
        self._commands = tuple(commands)
        #: what the commands run with beyond activation (``commands_environment``; content too)
        self._commands_env = tuple(sorted(commands_env)) if self._commands else ()
        self._hash: str | None = None
        self._load: Callable[[], tuple[tuple[CondaRecord, ...], tuple[PipRecord, ...]]] | None = (
            None
        )

    @classmethod
    def deferred(
        cls,
        *,
        platform: str,
        kind: str,
        content_hash: str,
        load: Callable[[], tuple[tuple[CondaRecord, ...], tuple[PipRecord, ...]]],
        omitted: Iterable[str] = (),
        commands: Iterable[str] = (),
        commands_env: Iterable[tuple[str, str]] = (),
    ) -> LockedPlatform:
        """Content whose hash is known (checked before) and whose records ``load`` builds."""
        self = cls(
            platform=platform,
            kind=kind,
            omitted=omitted,
            commands=commands,
            commands_env=commands_env,
        )
        self._conda = self._pip = None
        self._hash = content_hash
        self._load = load
        return self

    def _records(self) -> tuple[tuple[CondaRecord, ...], tuple[PipRecord, ...]]:
        if self._conda is None or self._pip is None:
            assert self._load is not None
            self._conda, self._pip = self._load()
            self._load = None
        return self._conda, self._pip

    @property
    def platform(self) -> str:
        """The platform this content is for (``linux-64``...)."""
        return self._platform

    @property
    def kind(self) -> str:
        """``conda`` or ``venv``."""
        return self._kind

    @property
    def conda(self) -> tuple[CondaRecord, ...]:
        """The conda packages."""
        return self._records()[0]

    @property
    def pip(self) -> tuple[PipRecord, ...]:
        """The Python distributions uv installs after the conda layer."""
        return self._records()[1]

    @property
    def omitted(self) -> tuple[str, ...]:
        """``optional`` entries that could not be resolved for this platform (not retried)."""
        return self._omitted

    @property
    def commands(self) -> tuple[str, ...]:
        """``install_commands`` that run on this platform, in order (part of the content)."""
        return self._commands

    @property
    def commands_env(self) -> tuple[tuple[str, str], ...]:
        """The variables the install commands run with beyond activation (sorted; part of the
        content). Empty without commands, and in a lock written before they were recorded."""
        return self._commands_env

    @property
    def content_hash(self) -> str:
        """The hash of the locked content (the prefix address, interpreter aside for venvs)."""
        if self._hash is None:
            conda, pip = self._records()
            self._hash = content_hash(
                kind=self._kind,
                platform=self._platform,
                conda=(r.as_dict() for r in conda),
                pip=(r.as_dict() for r in pip),
                commands=self._commands,
                commands_env=self._commands_env,
            )
        return self._hash

    def python_version(self) -> str | None:
        """The version of the locked ``python`` conda package, if any."""
        return next((r.version for r in self.conda if r.name == "python"), None)

    def _key(self) -> tuple[Any, ...]:
        return (
            self._platform,
            self._kind,
            *self._records(),
            self._omitted,
            self._commands,
            self._commands_env,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LockedPlatform):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        conda, pip = self._records()
        return (
            f"LockedPlatform(platform={self._platform!r}, kind={self._kind!r},"
            f" conda={len(conda)} records, pip={len(pip)} records)"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class LockedEnv:
    """One env of the lock: the spec hash it was resolved from and its content per platform."""

    name: str
    spec_hash: str
    kind: str
    python: str | None = None
    #: the spec's ``variables`` (sorted), set when the env is activated; empty in older locks
    variables: tuple[tuple[str, str], ...] = ()
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


# --- integrity: the records-hash -----------------------------------------------------------


def with_records_hash(
    env: str, header: Mapping[str, Any], platform: str, content: Mapping[str, Any]
) -> dict[str, Any]:
    """One platform as the lock writes it, its records-hash placed after its content-hash.

    ``header`` holds the env's own fields; see ``check_records_hash``.
    """
    stamp = records_hash(env=env, header=header, platform=platform, content=content)
    out: dict[str, Any] = {}
    for key, value in content.items():
        if key != RECORDS_HASH:
            out[key] = value
        if key == "content-hash":
            out[RECORDS_HASH] = stamp
    out.setdefault(RECORDS_HASH, stamp)
    return out


def check_records_hash(
    path: Path, env: str, header: Mapping[str, Any], platform: str, content: Mapping[str, Any]
) -> None:
    """Raise ``LockError`` unless ``content`` (one platform as read) matches its records-hash.

    The content hash only covers what is installed (it is the prefix address); this one covers
    every field of every record, the platform's ``omitted`` and ``commands`` and the env's own
    fields, as written: any edit by hand is refused, not only one of a name, version or sha256.
    """
    given = content.get(RECORDS_HASH)
    if given is None:
        raise LockError(
            f"{path}: environment {env!r} on {platform} has no records-hash: an older Cema"
            " wrote the lock, or it was edited by hand.",
            hint="run `cema lock` to write it again (the environments are resolved again).",
        )
    if given != records_hash(env=env, header=header, platform=platform, content=content):
        raise LockError(
            f"{path}: the records of environment {env!r} on {platform} do not match their"
            " records-hash: the lock was edited by hand.",
            hint="run `cema lock` to resolve it again (or restore the file from git).",
        )


# --- what install commands read -------------------------------------------------------------


def commands_environment(
    name: str, variables: Iterable[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """What an env's install commands run with beyond activation, sorted: ``CEMA_ENV`` (its
    name) and its spec ``variables`` (which win). It is part of the content address of a
    prefix with commands, so that a prefix two envs share is the same for both of them."""
    return tuple(sorted({"CEMA_ENV": name, **dict(variables)}.items()))


def records_match(env: EnvSpec, locked: LockedEnv) -> bool:
    """Whether ``locked`` holds what ``env`` gives beside its solve: its ``variables`` and,
    on each platform with install commands, what they run with."""
    if locked.variables != env.variables:
        return False
    expected = commands_environment(env.name, env.variables)
    return all(p.commands_env == expected for p in locked.platforms.values() if p.commands)


def with_spec_fields(locked: LockedEnv, env: EnvSpec) -> LockedEnv:
    """``locked`` with ``env``'s variables and commands environment, its records unchanged (no
    solve: a change of ``variables`` alone, or a lock written before they were recorded)."""
    if records_match(env, locked):
        return locked
    expected = commands_environment(env.name, env.variables)
    platforms = {
        name: p
        if not p.commands or p.commands_env == expected
        else LockedPlatform(
            platform=p.platform,
            kind=p.kind,
            conda=p.conda,
            pip=p.pip,
            omitted=p.omitted,
            commands=p.commands,
            commands_env=expected,
        )
        for name, p in locked.platforms.items()
    }
    return replace(locked, variables=env.variables, platforms=platforms)


# --- freshness ------------------------------------------------------------------------------


def stale_envs(project: ProjectSpec, lock: Lockfile, names: Sequence[str] = ()) -> list[str]:
    """Names of envs whose spec changed since the lock (or that the lock lacks).

    A change of ``variables`` alone is one too: activation sets them, and install commands
    read them (``records_match``); re-locking it needs no solve.
    """
    wanted = names or sorted(project.environments)
    stale = []
    for name in wanted:
        env = project.env(name)
        locked = lock.envs.get(name)
        if locked is None or locked.spec_hash != spec_hash(env) or not records_match(env, locked):
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
    "RECORDS_HASH",
    "CondaRecord",
    "LockedEnv",
    "LockedPlatform",
    "Lockfile",
    "PipRecord",
    "check_fresh",
    "check_records_hash",
    "commands_environment",
    "records_match",
    "stale_envs",
    "with_records_hash",
    "with_spec_fields",
]
