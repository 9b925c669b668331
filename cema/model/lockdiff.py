"""What changed between two locks: per env and platform, packages added, removed, changed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from cema.model.lock import LockedEnv, LockedPlatform, Lockfile

Status = Literal["added", "removed", "changed", "unchanged"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Package:
    """One package as a lock diff shows it (``build`` is empty for pip distributions)."""

    name: str
    version: str
    build: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    """A package locked in both: another version, or the same version with another build."""

    name: str
    old: Package
    new: Package

    @property
    def line(self) -> str:
        """``~ name 1.0 -> 2.0``, or ``~ name 1.0 build_a -> build_b`` for a build-only change."""
        if self.old.version == self.new.version:
            return f"~ {self.name} {self.new.version} {self.old.build} -> {self.new.build}"
        return f"~ {self.name} {self.old.version} -> {self.new.version}"


@dataclass(frozen=True, kw_only=True, slots=True)
class PlatformDiff:
    """The package changes of one env on one platform."""

    platform: str
    status: Status
    added: tuple[Package, ...] = ()
    removed: tuple[Package, ...] = ()
    changed: tuple[Change, ...] = ()

    def lines(self) -> list[str]:
        """``+ name version``, ``- name version``, ``~ ...`` lines, sorted by kind then name."""
        return (
            [f"+ {p.name} {p.version}" for p in self.added]
            + [f"- {p.name} {p.version}" for p in self.removed]
            + [c.line for c in self.changed]
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (the ``platformDiff`` of the CLI's output schemas)."""
        return {
            "platform": self.platform,
            "status": self.status,
            "added": [_package_json(p) for p in self.added],
            "removed": [_package_json(p) for p in self.removed],
            "changed": [
                {
                    "name": c.name,
                    "old_version": c.old.version,
                    "new_version": c.new.version,
                    "old_build": c.old.build,
                    "new_build": c.new.build,
                }
                for c in self.changed
            ],
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class EnvDiff:
    """One env: its status, whether its spec changed, and its platforms' package changes."""

    name: str
    status: Status
    spec_changed: bool = False
    platforms: tuple[PlatformDiff, ...] = ()

    @property
    def relocked(self) -> bool:
        """True when the lock's entry for this env was written anew (spec or content moved)."""
        return self.status != "unchanged" or self.spec_changed

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (the ``envDiff`` of the CLI's output schemas)."""
        return {
            "name": self.name,
            "status": self.status,
            "spec_changed": self.spec_changed,
            "platforms": [p.to_json() for p in self.platforms],
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class LockDiff:
    """Every env of either lock, by name."""

    envs: tuple[EnvDiff, ...] = ()

    @property
    def changed(self) -> tuple[EnvDiff, ...]:
        """The envs whose packages changed (added, removed or changed envs)."""
        return tuple(e for e in self.envs if e.status != "unchanged")

    @property
    def relocked(self) -> tuple[EnvDiff, ...]:
        """The envs whose lock entry was written anew (``lock: cema.lock updated (N envs)``)."""
        return tuple(e for e in self.envs if e.relocked)

    def __bool__(self) -> bool:
        return bool(self.changed)

    def lines(self) -> list[str]:
        """Per changed env and platform a heading and its package lines; ``no change`` if none."""
        out: list[str] = []
        for env in self.changed:
            for platform in env.platforms:
                if platform.status == "unchanged":
                    continue
                note = "" if platform.status == "changed" else f" ({platform.status})"
                out.append(f"{env.name} [{platform.platform}]{note}:")
                out.extend(f"  {line}" for line in platform.lines())
        return out or ["no change"]

    def to_json(self) -> list[dict[str, Any]]:
        """JSON-ready list of env diffs."""
        return [e.to_json() for e in self.envs]


def _package_json(p: Package) -> dict[str, str]:
    return {"name": p.name, "version": p.version, "build": p.build}


def _packages(content: LockedPlatform | None) -> dict[str, Package]:
    """Name → package; a pip distribution whose name a conda package has is ``pip:name``."""
    if content is None:
        return {}
    out = {r.name: Package(name=r.name, version=r.version, build=r.build) for r in content.conda}
    for r in content.pip:
        key = f"pip:{r.name}" if r.name in out else r.name
        out[key] = Package(name=key, version=r.version)
    return out


def diff_platform(
    platform: str, old: LockedPlatform | None, new: LockedPlatform | None
) -> PlatformDiff:
    """The package changes of one platform from ``old`` to ``new`` (None: not locked there)."""
    if old is not None and new is not None and old.content_hash == new.content_hash:
        return PlatformDiff(platform=platform, status="unchanged")  # no records read
    before, after = _packages(old), _packages(new)
    changed = tuple(
        Change(name=n, old=before[n], new=after[n])
        for n in sorted(before.keys() & after.keys())
        if (before[n].version, before[n].build) != (after[n].version, after[n].build)
    )
    added = tuple(after[n] for n in sorted(after.keys() - before.keys()))
    removed = tuple(before[n] for n in sorted(before.keys() - after.keys()))
    status: Status = (
        "added"
        if old is None
        else "removed"
        if new is None
        else "changed"
        if added or removed or changed
        else "unchanged"  # the same packages, other content (a URL, install commands)
    )
    return PlatformDiff(
        platform=platform, status=status, added=added, removed=removed, changed=changed
    )


def diff_env(name: str, old: LockedEnv | None, new: LockedEnv | None) -> EnvDiff:
    """One env's changes from ``old`` to ``new`` (None: absent from that lock)."""
    before = dict(old.platforms) if old else {}
    after = dict(new.platforms) if new else {}
    platforms = tuple(
        diff_platform(p, before.get(p), after.get(p)) for p in sorted(before.keys() | after.keys())
    )
    status: Status = (
        "added"
        if old is None
        else "removed"
        if new is None
        else "changed"
        if any(p.status != "unchanged" for p in platforms)
        else "unchanged"
    )
    spec_changed = old is not None and new is not None and old.spec_hash != new.spec_hash
    return EnvDiff(name=name, status=status, spec_changed=spec_changed, platforms=platforms)


def diff_locks(old: Lockfile, new: Lockfile, names: Iterable[str] | None = None) -> LockDiff:
    """What changed from ``old`` to ``new``, per env (``names``: only these; default: all)."""
    wanted = sorted(set(names) if names is not None else old.envs.keys() | new.envs.keys())
    return LockDiff(
        envs=tuple(diff_env(n, old.envs.get(n), new.envs.get(n)) for n in wanted),
    )


__all__ = [
    "Change",
    "EnvDiff",
    "LockDiff",
    "Package",
    "PlatformDiff",
    "diff_env",
    "diff_locks",
    "diff_platform",
]
