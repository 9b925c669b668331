"""The planner: a pure diff of what the lock wants against what the store has."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cema.model.receipt import Receipt


@dataclass(frozen=True, kw_only=True, slots=True)
class Target:
    """What one env should be after the sync: its address and its locked package versions."""

    env: str
    address: str
    kind: str
    packages: Mapping[str, str] = field(default_factory=dict)
    #: conda package name → build (a build-only change is a change too)
    builds: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class PackageDiff:
    """Added, removed and changed packages between two contents of an env."""

    added: tuple[tuple[str, str], ...] = ()
    removed: tuple[tuple[str, str], ...] = ()
    #: (name, old version, new version)
    changed: tuple[tuple[str, str, str], ...] = ()
    #: the same version, another build: (name, version, old build, new build)
    rebuilt: tuple[tuple[str, str, str, str], ...] = ()

    def lines(self) -> list[str]:
        """Human-readable lines: ``+ name 1.0``, ``- name 1.0``, ``~ name 1.0 -> 2.0``,
        ``~ name 1.0 build_old -> build_new``."""
        changes = [(n, f"~ {n} {a} -> {b}") for n, a, b in self.changed]
        changes += [(n, f"~ {n} {v} {a} -> {b}") for n, v, a, b in self.rebuilt]
        return (
            [f"+ {n} {v}" for n, v in self.added]
            + [f"- {n} {v}" for n, v in self.removed]
            + [line for _, line in sorted(changes)]
        )

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.rebuilt)


def diff_packages(
    old: Mapping[str, str],
    new: Mapping[str, str],
    *,
    old_builds: Mapping[str, str] | None = None,
    new_builds: Mapping[str, str] | None = None,
) -> PackageDiff:
    """The package diff from ``old`` to ``new`` (name → version maps).

    With builds (conda name → build) on both sides, a package whose build changed and whose
    version did not is ``rebuilt``; a build known on one side only (a receipt written before
    receipts kept builds) is no change.
    """
    both = old.keys() & new.keys()
    before, after = old_builds or {}, new_builds or {}
    return PackageDiff(
        added=tuple(sorted((n, new[n]) for n in new.keys() - old.keys())),
        removed=tuple(sorted((n, old[n]) for n in old.keys() - new.keys())),
        changed=tuple(sorted((n, old[n], new[n]) for n in both if old[n] != new[n])),
        rebuilt=tuple(
            sorted(
                (n, new[n], before[n], after[n])
                for n in both & before.keys() & after.keys()
                if old[n] == new[n] and before[n] != after[n]
            )
        ),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Create:
    """Build a prefix the env never had."""

    env: str
    address: str
    kind: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Update:
    """Move the env to new content; ``build`` is False when the store already has it."""

    env: str
    old_address: str
    address: str
    kind: str
    diff: PackageDiff
    build: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class Reuse:
    """The env's content is already published in the store: nothing to build."""

    env: str
    address: str
    kind: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Remove:
    """Delete a prefix nothing references any more (only with ``--prune`` or ``cema gc``)."""

    address: str
    was: str | None = None


Action = Create | Update | Reuse | Remove


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """The decisions for one sync, in order: builds and reuses by env name, then removals."""

    actions: tuple[Action, ...] = ()

    @property
    def builds(self) -> tuple[Create | Update, ...]:
        """The actions that build a prefix."""
        return tuple(
            a for a in self.actions if isinstance(a, Create) or (isinstance(a, Update) and a.build)
        )

    @property
    def is_noop(self) -> bool:
        """True when the sync changes nothing on disk."""
        return all(isinstance(a, Reuse) for a in self.actions)

    def to_json(self) -> list[dict[str, Any]]:
        """A JSON-ready list of actions (for ``cema plan --json``)."""
        out: list[dict[str, Any]] = []
        for action in self.actions:
            match action:
                case Create(env=env, address=address, kind=kind):
                    out.append({"action": "create", "env": env, "address": address, "kind": kind})
                case Update():
                    out.append(
                        {
                            "action": "update",
                            "env": action.env,
                            "from": action.old_address,
                            "address": action.address,
                            "kind": action.kind,
                            "build": action.build,
                            "added": [list(p) for p in action.diff.added],
                            "removed": [list(p) for p in action.diff.removed],
                            "changed": [list(p) for p in action.diff.changed],
                            "rebuilt": [list(p) for p in action.diff.rebuilt],
                        }
                    )
                case Reuse(env=env, address=address, kind=kind):
                    out.append({"action": "reuse", "env": env, "address": address, "kind": kind})
                case Remove(address=address, was=was):
                    out.append({"action": "remove", "address": address, "env": was})
        return out


def make_plan(
    targets: Iterable[Target],
    *,
    ready: Mapping[str, Receipt],
    last_synced: Mapping[str, str],
    referenced_elsewhere: Iterable[str] = (),
    prune: bool = False,
) -> Plan:
    """Decide per env: create, update, reuse; and with ``prune``, what to remove.

    ``ready`` maps addresses of complete prefixes to their receipts (at least the targets and the
    last-synced ones), ``last_synced`` maps env names to the address this project used last, and
    ``referenced_elsewhere`` holds addresses other projects still use (never removed).
    """
    actions: list[Action] = []
    wanted: set[str] = set()
    for target in sorted(targets, key=lambda t: t.env):
        wanted.add(target.address)
        previous = last_synced.get(target.env)
        exists = target.address in ready
        if previous is not None and previous != target.address:
            old_receipt = ready.get(previous)
            old_packages = old_receipt.packages() if old_receipt else {}
            old_builds = old_receipt.conda_builds() if old_receipt else {}
            diff = diff_packages(
                old_packages, target.packages, old_builds=old_builds, new_builds=target.builds
            )
            actions.append(
                Update(
                    env=target.env,
                    old_address=previous,
                    address=target.address,
                    kind=target.kind,
                    diff=diff,
                    build=not exists,
                )
            )
        elif exists:
            actions.append(Reuse(env=target.env, address=target.address, kind=target.kind))
        else:
            actions.append(Create(env=target.env, address=target.address, kind=target.kind))
    if prune:
        keep = wanted | set(referenced_elsewhere)
        by_address = {address: env for env, address in last_synced.items()}
        for address in sorted(by_address):
            if address not in keep and address in ready:
                actions.append(Remove(address=address, was=by_address[address]))
    return Plan(actions=tuple(actions))


__all__ = [
    "Action",
    "Create",
    "PackageDiff",
    "Plan",
    "Remove",
    "Reuse",
    "Target",
    "Update",
    "diff_packages",
    "make_plan",
]
