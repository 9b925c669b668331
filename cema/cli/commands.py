"""The commands of ``cema``: each runs one verb over the library and prints its result."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cema.errors import CemaError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from cema.project import Project, SyncMode

STARTER = """\
# Cema project: `cema lock` resolves it into cema.lock, `cema sync` builds the environments.
version: 1
channels: [conda-forge]
platforms: [{platform}]
environments:
  default:
    python: "3.11"
    conda: []
    pip: []
"""


# -- commands ----------------------------------------------------------------------------------


def _project(args: argparse.Namespace) -> Project:
    from cema.project import Project

    engine: Any = getattr(args, "engine", None)
    binary = getattr(args, "micromamba", None)
    if binary is not None or engine == "micromamba":
        from cema.engines.micromamba import MicromambaEngine

        engine = MicromambaEngine(binary=binary)
    return Project.load(args.project, store=args.store, engine=engine)


def cmd_init(args: argparse.Namespace) -> int:
    """Write a starting ``cema.yaml``."""
    from cema._fs import atomic_write
    from cema.model.spec import SPEC_FILENAME, current_platform

    folder = Path(args.project or ".")
    target = folder if folder.suffix in (".yaml", ".yml") else folder / SPEC_FILENAME
    if target.exists():
        raise CemaError(f"{target} already exists.", hint="edit it, or remove it first.")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, STARTER.format(platform=current_platform()))
    if not args.quiet:
        print(f"wrote {target}: add dependencies, then run `cema lock`.")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Write or extend ``cema.yaml`` from another tool's file."""
    from cema._fs import atomic_write
    from cema.interop.merge import import_into
    from cema.model.spec import SPEC_FILENAME
    from cema.project import find_spec_file

    if args.project:
        given = Path(args.project)
        target = given if given.suffix in (".yaml", ".yml") else given / SPEC_FILENAME
    else:
        try:
            target = find_spec_file()
        except CemaError:
            target = Path.cwd() / SPEC_FILENAME
    result = import_into(Path(args.file), target, env=args.env)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, result.text)
    if not args.quiet:
        names = ", ".join(result.envs)
        verb = "extended" if result.extended else "wrote"
        print(f"{verb} {target}: environment(s) {names} from {args.file}; run `cema lock` next.")
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write an env of ``cema.lock`` in another tool's format, without solving."""
    from cema.interop.exporters import export_env, pick_env
    from cema.model.lock import stale_envs

    project = _project(args)
    lock = project.read_lock()
    name = pick_env(lock, args.env).name
    text = export_env(
        lock,
        args.format,
        env=name,
        platform=args.platform,
        spec=project.spec.environments.get(name),
    )
    if name not in project.spec.environments or stale_envs(project.spec, lock, [name]):
        print(
            f"warning: cema.lock is out of date for {name!r}: exporting what it holds"
            " (run `cema lock` first to export the current cema.yaml).",
            file=sys.stderr,
        )
    if args.output:
        from cema._fs import atomic_write

        atomic_write(Path(args.output), text)
        if not args.quiet:
            print(f"wrote {args.output} ({args.format}, environment {name!r})")
    else:
        sys.stdout.write(text)
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    """Resolve ``cema.yaml`` into ``cema.lock`` (or check that it is up to date)."""
    from cema.cli import output

    project = _project(args)
    if args.check:
        project.check()
        if args.json:
            output.print_json(output.lock_json(project, None, written=False))
        elif not args.quiet:
            print(f"{project.lock_path} is up to date.")
        return 0
    upgrade: Sequence[str] | bool = False
    if args.upgrade is not None:
        upgrade = args.upgrade or True
    lock = project.lock(upgrade=upgrade, reporter=_progress(args))
    diff = project.last_lock_diff
    if args.json:
        output.print_json(output.lock_json(project, diff, written=True))
    elif not args.quiet:
        from cema.cli.progress import change_role, paint

        for line in diff.lines() if diff else ["no change"]:
            print(paint(line, change_role(line), sys.stdout))
        envs = output.plural(len(lock.envs), "environment")
        print(f"locked {envs} into {project.lock_path}")
    return 0


def _mode(args: argparse.Namespace) -> SyncMode:
    mode: SyncMode | None = args.mode
    return mode or "auto"


def cmd_plan(args: argparse.Namespace) -> int:
    """Show what ``cema sync`` would do (re-locking stale envs in memory, never written)."""
    from cema.cli import output

    project = _project(args)
    if args.script:
        script = project.script(args.script, names=args.env or (), prune=args.prune, link=args.link)
        sys.stdout.write(script.text)
        return 0
    plan = project.plan(names=args.env or (), prune=args.prune, mode=_mode(args), link=args.link)
    if args.json:
        output.print_json(
            {
                "version": output.JSON_VERSION,
                "lock": output.lock_section(project, written=False),
                "actions": output.plan_actions_json(plan, project.store),
            }
        )
    else:
        if not args.quiet:
            output.print_relock(project, written=False)
        output.print_plan(plan, project.store)
    return 0


def _progress(args: argparse.Namespace) -> Any:
    """The progress display on a TTY, unless ``-q``, ``--no-progress``/``$CEMA_NO_PROGRESS``
    or ``$CI`` say otherwise (None: nothing is drawn)."""
    from cema.cli.progress import reporter_for

    return reporter_for(args)


def cmd_sync(args: argparse.Namespace) -> int:
    """Make the store match the lock."""
    from cema import stamp
    from cema._fs import stat_signature
    from cema._paths import find_spec_file
    from cema.cli import output

    # taken before cema.yaml is read: an edit during the sync then gets no stamp
    spec_signature = stat_signature(find_spec_file(Path(args.project) if args.project else None))
    project = _project(args)
    result = project.sync(
        names=args.env or (),
        mode=_mode(args),
        prune=args.prune,
        reporter=_progress(args),
        verify=args.verify,
        link=args.link,
    )
    if not args.quiet:
        output.print_relock(project, written=True)
    if args.json:
        output.print_json(output.sync_json(project, result.plan, result.prefixes))
    elif not args.quiet:
        if result.plan.is_noop:
            print(stamp.noop_message(len(result.prefixes)))
        else:
            output.print_plan(result.plan, project.store)
    lock_signature = project.fresh_lock_signature
    if not args.env and args.link is None and project.spec.path and lock_signature:
        # every env is ready now: the next plain `cema sync` can say so from a few stats
        witnesses = project.store.ready_witnesses(
            project.lock_path, [prefix.name for prefix in result.prefixes.values()]
        )
        if witnesses is not None:
            stamp.record(
                project.spec.path,
                project.lock_path,
                store=args.store,
                witnesses=witnesses,
                signatures=(spec_signature, lock_signature),
                prefixes=list(result.prefixes.values()),
                count=len(result.prefixes),
            )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List the project's envs and where they are built."""
    from cema.cli import output

    project = _project(args)
    rows = output.list_rows(project)
    if args.json:
        output.print_json(output.list_json(project, rows))
    else:
        output.print_list(rows)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check the installed files of the project's envs against their package records."""
    from cema.verify import check_env, summary

    project = _project(args)
    names = [project.spec.env(n).name for n in args.env] if args.env else None
    registration = project.store.registration(project.lock_path)
    checks = []
    for name in names or sorted(project.spec.environments):
        address = registration.envs.get(name) if registration else None
        check = check_env(project.store, name, address, full=args.full)
        checks.append(check)
        if not (check.ok and args.quiet):
            print("\n".join(check.lines(limit=None if args.verbose else 20)))
    failed = summary(checks)
    if failed:
        raise CemaError(failed)
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """Remove prefixes that no registered project references."""
    from cema.store import Store

    store = Store(args.store) if args.store else _gc_store(args)
    # inventory first: a sync registers what it builds before its receipt can appear
    ready = store.inventory()
    referenced = store.referenced() | store.pinned()  # running workers keep their prefixes
    unused = sorted(a for a in ready if a not in referenced)
    removed: list[str] = []
    talk = not (args.json or args.quiet)
    for address in unused:
        if args.dry_run:
            if talk:
                print(f"would remove {store.prefix(address)}")
        elif store.remove_unreferenced(address):  # checked again under the prefix's lock
            if talk:
                print(f"removing {store.prefix(address)}")
            removed.append(address)
    if not args.dry_run:
        store.sweep_staging(older_than_s=0 if args.all_staging else 24 * 3600.0)
    from cema.runtime.launch import clean_orphans

    orphans = clean_orphans(dry_run=args.dry_run)  # what killed hosts' workers left
    for path in orphans if talk else ():
        print(f"{'would remove' if args.dry_run else 'removing'} {path}")
    if args.json:
        from cema.cli import output

        output.print_json(output.gc_json(store, unused, removed, orphans, dry_run=args.dry_run))
    elif not args.quiet:
        print(
            f"{len(unused)} unused prefix(es) found."
            if args.dry_run
            else f"{len(removed)} unused prefix(es) removed."
        )
    return 0


def _gc_store(args: argparse.Namespace) -> Any:
    from cema.store import Store

    try:
        return _project(args).store
    except CemaError:
        return Store()
