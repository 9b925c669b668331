"""The ``cema`` command line: argparse commands over the library; the only module that prints."""

from __future__ import annotations

# `cema --version` and `--help` must cost little more than the interpreter's start-up: this
# module imports argparse and the version only; each command imports what it uses.
import argparse
import os
import sys
from pathlib import Path

from cema._version import __version__
from cema.errors import CemaError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from cema.model.plan import Plan
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
    print(f"wrote {target}: add dependencies, then run `cema lock`.")
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    """Resolve ``cema.yaml`` into ``cema.lock`` (or check that it is up to date)."""
    project = _project(args)
    if args.check:
        project.check()
        if not args.quiet:
            print(f"{project.lock_path} is up to date.")
        return 0
    upgrade: Sequence[str] | bool = False
    if args.upgrade is not None:
        upgrade = args.upgrade or True
    lock = project.lock(upgrade=upgrade)
    if not args.quiet:
        print(f"locked {len(lock.envs)} environment(s) into {project.lock_path}")
    return 0


def _print_plan(plan: Plan, project: Project) -> None:
    from cema.model.plan import Create, Remove, Reuse, Update

    for action in plan.actions:
        match action:
            case Create(env=env, address=address, kind=kind):
                print(f"create  {env} ({kind}) -> {project.store.prefix(address)}")
            case Update():
                how = "build" if action.build else "reuse"
                print(
                    f"update  {action.env} ({action.kind}, {how}) -> "
                    f"{project.store.prefix(action.address)}"
                )
                for line in action.diff.lines():
                    print(f"          {line}")
            case Reuse(env=env, address=address):
                print(f"reuse   {env} -> {project.store.prefix(address)}")
            case Remove(address=address, was=was):
                print(f"remove  {project.store.prefix(address)}" + (f" (was {was})" if was else ""))


def cmd_plan(args: argparse.Namespace) -> int:
    """Show what ``cema sync`` would do."""
    project = _project(args)
    if args.script:
        sys.stdout.write(project.script(args.script, names=args.env or (), prune=args.prune).text)
        return 0
    plan = project.plan(names=args.env or (), prune=args.prune, mode="locked")
    if args.json:
        import json

        print(json.dumps(plan.to_json(), indent=2))
    else:
        _print_plan(plan, project)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    """Make the store match the lock."""
    project = _project(args)
    mode: SyncMode = "frozen" if args.frozen else "locked" if args.locked else "auto"
    from cema.engines.builder import BarReporter

    reporter = BarReporter(sys.stderr) if sys.stderr.isatty() and not args.quiet else None
    result = project.sync(
        names=args.env or (), mode=mode, prune=args.prune, reporter=reporter, verify=args.verify
    )
    if not args.quiet:
        if result.plan.is_noop:
            print(f"{len(result.prefixes)} environment(s) up to date.")
        else:
            _print_plan(result.plan, project)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List the project's envs and where they are built."""
    project = _project(args)
    registration = project.store.registration(project.lock_path)
    for name, env in sorted(project.spec.environments.items()):
        address = registration.envs.get(name) if registration else None
        receipt = project.store.receipt(address) if address else None
        where = str(project.store.prefix(address)) if receipt and address else "not synced"
        count = f"{len(receipt.packages())} packages" if receipt else ""
        print(f"{name:20} {env.resolved_kind:6} {count:14} {where}")
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


def cmd_run(args: argparse.Namespace) -> int:
    """Run a command inside an activated env."""
    from cema.activation import activated_environ

    project = _project(args)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise CemaError("no command given.", hint="cema run NAME -- COMMAND [ARGS...]")
    env_spec = project.spec.env(args.name)
    prefix = project.prefix(args.name)
    receipt = project.store.receipt(prefix.name)
    kind = receipt.kind if receipt else env_spec.resolved_kind
    env = activated_environ(prefix, kind=kind, name=args.name, variables=env_spec.variables)
    import shutil
    import subprocess

    exe = shutil.which(command[0], path=env["PATH"]) or command[0]
    try:
        return subprocess.call([exe, *command[1:]], env=env)
    except FileNotFoundError:
        raise CemaError(
            f"{command[0]!r} was not found in environment {args.name!r}.",
            hint="check the spelling, or add the package that provides it.",
        ) from None


def cmd_gc(args: argparse.Namespace) -> int:
    """Remove prefixes that no registered project references."""
    from cema.store import Store

    store = Store(args.store) if args.store else _gc_store(args)
    # inventory first: a sync registers what it builds before its receipt can appear
    ready = store.inventory()
    referenced = store.referenced() | store.pinned()  # running workers keep their prefixes
    unused = sorted(a for a in ready if a not in referenced)
    removed = 0
    for address in unused:
        if args.dry_run:
            print(f"would remove {store.prefix(address)}")
        elif store.remove_unreferenced(address):  # checked again under the prefix's lock
            print(f"removing {store.prefix(address)}")
            removed += 1
    if not args.dry_run:
        store.sweep_staging(older_than_s=0 if args.all_staging else 24 * 3600.0)
    print(
        f"{len(unused)} unused prefix(es) found."
        if args.dry_run
        else f"{removed} unused prefix(es) removed."
    )
    return 0


def _gc_store(args: argparse.Namespace) -> Any:
    from cema.store import Store

    try:
        return _project(args).store
    except CemaError:
        return Store()


# -- parser --------------------------------------------------------------------------------------

COMMANDS = ("init", "lock", "plan", "sync", "list", "verify", "run", "gc")


def _common_options(default: Any) -> argparse.ArgumentParser:
    """Options accepted before and after the command (SUPPRESS keeps the first one given)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--project",
        "-p",
        metavar="PATH",
        default=default,
        help="cema.yaml or its folder (default: search from the cwd upwards)",
    )
    common.add_argument(
        "--store",
        metavar="PATH",
        default=default,
        help="the store (default: `store:` in cema.yaml, else $CEMA_HOME, else the user cache dir)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if default is None else default,
        help="more detail",
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if default is None else default,
        help="print only errors",
    )
    return common


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser for every command (``only``: for that command alone, which is faster
    to build and parses that command's arguments the same way)."""
    common = _common_options(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="cema",
        description="Declarative, locked, content-addressed conda and pip envs.",
        parents=[_common_options(None)],
    )
    parser.add_argument("-V", "--version", action="version", version=f"cema {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    if only in (None, "init"):
        p = sub.add_parser("init", parents=[common], help="write a starting cema.yaml")
        p.set_defaults(func=cmd_init)

    if only in (None, "lock"):
        p = sub.add_parser("lock", parents=[common], help="resolve cema.yaml into cema.lock")
        p.add_argument(
            "--check", action="store_true", help="fail if cema.lock is out of date, without solving"
        )
        p.add_argument(
            "--upgrade",
            nargs="*",
            metavar="NAME",
            help="resolve these envs (all when none named) again even if unchanged",
        )
        p.set_defaults(func=cmd_lock)

    if only in (None, "plan"):
        p = sub.add_parser("plan", parents=[common], help="show what sync would do")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--prune", action="store_true", help="include removals")
        p.add_argument("-e", "--env", action="append", metavar="NAME", help="only this env")
        p.add_argument(
            "--script",
            choices=["bash", "powershell"],
            help="print the plan as a micromamba script for this shell instead",
        )
        p.set_defaults(func=cmd_plan)

    if only in (None, "sync"):
        p = sub.add_parser("sync", parents=[common], help="make this machine match cema.lock")
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--locked", action="store_true", help="fail if cema.lock is out of date")
        mode.add_argument(
            "--frozen",
            action="store_true",
            help="install cema.lock as it is: no freshness check, no solve",
        )
        p.add_argument(
            "--prune", action="store_true", help="remove prefixes this project no longer uses"
        )
        p.add_argument(
            "--verify",
            action="store_true",
            help="check the files of the envs it keeps (as `cema verify`); rebuild damaged ones",
        )
        p.add_argument("-e", "--env", action="append", metavar="NAME", help="only this env")
        p.add_argument(
            "--engine",
            choices=["rattler", "micromamba"],
            help="what builds the prefixes (default: `engine:` in cema.yaml, else rattler)",
        )
        p.add_argument(
            "--micromamba",
            metavar="PATH",
            help="the micromamba binary (implies --engine micromamba)",
        )
        p.set_defaults(func=cmd_sync)

    if only in (None, "list"):
        p = sub.add_parser("list", parents=[common], help="list the envs and their prefixes")
        p.set_defaults(func=cmd_list)

    if only in (None, "verify"):
        p = sub.add_parser("verify", parents=[common], help="check the installed files of the envs")
        p.add_argument("-e", "--env", action="append", metavar="NAME", help="only this env")
        p.add_argument("--full", action="store_true", help="also hash every file (slower)")
        p.set_defaults(func=cmd_verify)

    if only in (None, "run"):
        p = sub.add_parser("run", parents=[common], help="run a command in an activated env")
        p.add_argument("name", metavar="NAME")
        p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND")
        p.set_defaults(func=cmd_run)

    if only in (None, "gc"):
        p = sub.add_parser("gc", parents=[common], help="remove prefixes no project references")
        p.add_argument("--dry-run", action="store_true", help="only list them")
        p.add_argument("--all-staging", action="store_true", help="also clear recent staging dirs")
        p.set_defaults(func=cmd_gc)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` when it is certain (else None: build the whole parser).

    Only global options may come before it; ``--project``/``-p``/``--store`` take a value.
    Anything unusual (``--help``, an abbreviated option, ``--``) gives None.
    """
    given = iter(argv)
    flags = ("-q", "--quiet", "--verbose")
    for arg in given:
        if arg in ("--project", "-p", "--store"):
            next(given, None)
        elif arg in flags or arg.startswith(("--project=", "--store=", "-vv")) or arg == "-v":
            continue
        elif arg.startswith("-"):
            return None
        else:
            return arg if arg in COMMANDS else None
    return None


def _setup_logging(verbose: int, quiet: bool) -> None:
    import logging

    level = (
        logging.ERROR
        if quiet
        else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cema`` command: user errors print ``error:``/``hint:`` and exit 1."""
    given = sys.argv[1:] if argv is None else list(argv)
    if given in (["--version"], ["-V"]):  # the common probe, answered before argparse is built
        print(f"cema {__version__}")
        raise SystemExit(0)  # what argparse's version action does
    parser = build_parser(_command_of(given))
    args = parser.parse_args(given)
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args))
    except CemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # a path that is not what it should be (a file where a folder goes, no permission...)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        print("hint: check that path (and --store, --project).", file=sys.stderr)
        return 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def entry() -> None:
    """The console script: ``main()``, then leave without finalizing the interpreter.

    py-rattler's tokio threads can still be handing a result back to Python when ``main()``
    returns; finalizing the interpreter under them crashes (SIGSEGV/SIGABRT) after the work is
    done. Nothing is left to clean up here: flush what was written and exit at once.
    """
    import contextlib
    import logging

    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
