"""What the commands print: plans, lock changes, and the ``--json`` documents (``specs/cli-*``)."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path
    from typing import Any, TextIO

    from cema.model.lockdiff import LockDiff
    from cema.model.plan import Plan
    from cema.project import Project
    from cema.store import Store

#: the ``version`` of every ``--json`` document (``specs/cli-*.schema.json``)
JSON_VERSION = 1


def plural(count: int, word: str) -> str:
    """``1 package``, ``2 packages``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def print_json(document: Mapping[str, Any]) -> None:
    """One JSON document on stdout."""
    import json

    print(json.dumps(document, indent=2))


# -- plans -------------------------------------------------------------------------------------


def print_plan(plan: Plan, store: Store, out: TextIO | None = None) -> None:
    """One line per action, and an update's package diff below it."""
    from cema.cli.progress import change_role, paint
    from cema.model.plan import Create, Remove, Reuse, Update

    out = out or sys.stdout

    def verb(word: str, role: str) -> str:  # in colour on a TTY
        return paint(word, role, out) + " " * (8 - len(word))

    for action in plan.actions:
        match action:
            case Create(env=env, address=address, kind=kind):
                print(
                    f"{verb('create', 'added')}{env} ({kind}) -> {store.prefix(address)}", file=out
                )
            case Update():
                how = "build" if action.build else "reuse"
                print(
                    f"{verb('update', 'changed')}{action.env} ({action.kind}, {how}) -> "
                    f"{store.prefix(action.address)}",
                    file=out,
                )
                for line in action.diff.lines():
                    print(f"          {paint(line, change_role(line), out)}", file=out)
            case Reuse(env=env, address=address):
                print(f"{verb('reuse', 'dim')}{env} -> {store.prefix(address)}", file=out)
            case Remove(address=address, was=was):
                suffix = f" (was {was})" if was else ""
                print(f"{verb('remove', 'removed')}{store.prefix(address)}{suffix}", file=out)


def plan_actions_json(plan: Plan, store: Store) -> list[dict[str, Any]]:
    """The plan's actions as ``Plan.to_json`` gives them, each with its prefix path."""
    out = []
    for given in plan.to_json():
        action = dict(given)
        action["prefix"] = str(store.prefix(action["address"]))
        if action["action"] == "update":
            action["from_prefix"] = str(store.prefix(action["from"]))
        out.append(action)
    return out


# -- lock changes ------------------------------------------------------------------------------


def lock_section(project: Project, *, written: bool) -> dict[str, Any] | None:
    """What the last re-lock changed (``lock`` in ``plan``/``sync`` JSON), None if none ran."""
    diff = project.last_lock_diff
    if diff is None:
        return None
    return {
        "path": str(project.lock_path),
        "written": written,
        "changed": bool(diff),
        "envs": [e.to_json() for e in diff.relocked],
    }


def print_relock(project: Project, *, written: bool) -> None:
    """On stderr, as uv does: ``lock: cema.lock updated (2 envs)`` and what changed."""
    diff = project.last_lock_diff
    if diff is None:
        return
    name = project.lock_path.name
    count = plural(len(diff.relocked), "env")
    if written:
        print(f"lock: {name} updated ({count})", file=sys.stderr)
    else:
        print(
            f"lock: {name} is out of date ({count}): planned from a new resolution, not written"
            " (`cema lock` writes it)",
            file=sys.stderr,
        )
    from cema.cli.progress import change_role, paint

    for line in diff.lines():
        print(f"  {paint(line, change_role(line), sys.stderr)}", file=sys.stderr)


def lock_json(project: Project, diff: LockDiff | None, *, written: bool) -> dict[str, Any]:
    """The ``cema lock --json`` document (``specs/cli-lock.schema.json``)."""
    envs = [e.to_json() for e in diff.envs] if diff else []
    return {
        "version": JSON_VERSION,
        "lock": str(project.lock_path),
        "written": written,
        "changed": bool(diff),
        "envs": envs,
    }


# -- list, sync, gc ------------------------------------------------------------------------------


def list_rows(project: Project) -> list[dict[str, Any]]:
    """Each declared env: kind, whether it is synced, its prefix and package count."""
    registration = project.store.registration(project.lock_path)
    rows = []
    for name, env in sorted(project.spec.environments.items()):
        address = registration.envs.get(name) if registration else None
        receipt = project.store.receipt(address) if address else None
        synced = receipt is not None and address is not None
        rows.append(
            {
                "name": name,
                "kind": env.resolved_kind,
                "synced": synced,
                "address": address if synced else None,
                "prefix": str(project.store.prefix(address)) if synced and address else None,
                "packages": len(receipt.packages()) if receipt else None,
            }
        )
    return rows


def print_list(rows: list[dict[str, Any]]) -> None:
    """``name kind N packages prefix`` (``not synced`` for envs without a prefix)."""
    for row in rows:
        count = plural(row["packages"], "package") if row["packages"] is not None else ""
        print(f"{row['name']:20} {row['kind']:6} {count:14} {row['prefix'] or 'not synced'}")


def list_json(project: Project, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``cema list --json`` document (``specs/cli-list.schema.json``)."""
    return {
        "version": JSON_VERSION,
        "project": str(project.spec.path) if project.spec.path else None,
        "lock": str(project.lock_path),
        "store": str(project.store.root),
        "envs": rows,
    }


def sync_json(project: Project, plan: Plan, prefixes: Mapping[str, Path]) -> dict[str, Any]:
    """The ``cema sync --json`` document (``specs/cli-sync.schema.json``)."""
    return {
        "version": JSON_VERSION,
        "lock": lock_section(project, written=True),
        "actions": plan_actions_json(plan, project.store),
        "envs": [
            {"name": name, "address": path.name, "prefix": str(path)}
            for name, path in sorted(prefixes.items())
        ],
    }


def gc_json(
    store: Store,
    unused: list[str],
    removed: list[str],
    orphans: Sequence[Path] = (),
    *,
    dry_run: bool,
) -> dict[str, Any]:
    """The ``cema gc --json`` document (``specs/cli-gc.schema.json``)."""

    def entries(addresses: list[str]) -> list[dict[str, str]]:
        return [{"address": a, "prefix": str(store.prefix(a))} for a in addresses]

    return {
        "version": JSON_VERSION,
        "store": str(store.root),
        "dry_run": dry_run,
        "unused": entries(unused),
        "removed": entries(removed),
        "orphans": [str(p) for p in orphans],
    }
