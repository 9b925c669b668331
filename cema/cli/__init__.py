"""The ``cema`` command line: its parser and error boundary (only ``cema.cli`` prints)."""

from __future__ import annotations

# `cema --version` and `--help` must cost little more than the interpreter's start-up: this
# module imports argparse and the version only; each command (cli/commands.py) imports what
# it uses.
import argparse
import os
import sys

from cema._version import __version__
from cema.errors import CemaError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


# -- parser --------------------------------------------------------------------------------------

COMMANDS = (
    "init",
    "import",
    "export",
    "lock",
    "plan",
    "sync",
    "list",
    "verify",
    "run",
    "shell",
    "shell-hook",
    "gc",
)


def _common_options(default: Any) -> argparse.ArgumentParser:
    """Options accepted before and after the command (SUPPRESS keeps the first one given).

    The top-level defaults (``default`` None) come from the environment: a flag on the
    command line wins over its variable.
    """
    from cema.cli.environ import COLORS, env_color, env_flag

    top = default is None
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--project",
        "-p",
        metavar="PATH",
        default=(os.environ.get("CEMA_PROJECT") or None) if top else default,
        help="cema.yaml or its folder (default: $CEMA_PROJECT, else search from the cwd upwards)",
    )
    common.add_argument(
        "--store",
        metavar="PATH",
        default=(os.environ.get("CEMA_STORE") or None) if top else default,
        help="the store (default: $CEMA_STORE, else `store:` in cema.yaml, else $CEMA_HOME,"
        " else the user cache dir)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if top else default,
        help="more detail",
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if top else default,
        help="print only errors",
    )
    common.add_argument(
        "--no-progress",
        action="store_true",
        default=env_flag("CEMA_NO_PROGRESS") if top else default,
        help="never draw progress bars (default: on a TTY, unless $CEMA_NO_PROGRESS or $CI)",
    )
    common.add_argument(
        "--color",
        choices=COLORS,
        default=env_color() if top else default,
        help="colour errors and summaries: auto (on a TTY, unless $NO_COLOR), always, never"
        " (default: $CEMA_COLOR, else auto)",
    )
    return common


def _mode_options(parser: argparse.ArgumentParser, *, frozen_help: str) -> None:
    """``--locked`` / ``--frozen``: one ``mode``, by default ``$CEMA_LOCKED``/``$CEMA_FROZEN``."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--locked",
        dest="mode",
        action="store_const",
        const="locked",
        help="fail if cema.lock is out of date ($CEMA_LOCKED)",
    )
    mode.add_argument(
        "--frozen", dest="mode", action="store_const", const="frozen", help=frozen_help
    )
    from cema.cli.environ import env_mode

    parser.set_defaults(mode=env_mode())


def _link_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--link",
        choices=["hardlink", "copy"],
        default=None,
        help="how this run's prefixes get their files: hardlink (shared with the package cache)"
        " or copy (files of their own); default: each env's `link:` in cema.yaml",
    )


def _json_option(parser: argparse.ArgumentParser, schema: str) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help=f"machine-readable output (specs/{schema})",
    )


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser for every command (``only``: for that command alone, which is faster
    to build and parses that command's arguments the same way)."""
    from cema.cli import commands, environ

    common = _common_options(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="cema",
        description="Declarative, locked, content-addressed conda and pip envs.",
        parents=[_common_options(None)],
    )
    parser.add_argument("-V", "--version", action="version", version=f"cema {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    if only in (None, "init"):
        p = sub.add_parser(
            "init",
            parents=[common],
            help="write a starting cema.yaml",
            description="Write a starting cema.yaml (in --project, else the cwd) with one env.",
        )
        p.set_defaults(func=commands.cmd_init)

    if only in (None, "import"):
        p = sub.add_parser(
            "import",
            parents=[common],
            help="write or extend cema.yaml from another tool's file",
            description="Read an environment.yml, requirements.txt, pixi.toml, pyproject.toml"
            " ([tool.pixi]) or conda-lock.yml into cema.yaml (created when absent).",
        )
        p.add_argument("file", metavar="FILE", help="the file to import")
        p.add_argument(
            "--env",
            metavar="NAME",
            help="the name of the imported env (default: the file's own, else `default`)",
        )
        p.set_defaults(func=commands.cmd_import)

    if only in (None, "export"):
        from cema.interop import EXPORT_FORMATS

        p = sub.add_parser(
            "export",
            parents=[common],
            help="write an env of cema.lock in another tool's format, without solving",
            description="Write one env of cema.lock as a conda explicit file, an environment.yml"
            " with exact pins, a conda-lock.yml, a hashed requirements.txt or a pylock.toml.",
        )
        p.add_argument("--format", "-f", required=True, choices=EXPORT_FORMATS)
        p.add_argument("-e", "--env", metavar="NAME", help="the env (default: the only one)")
        p.add_argument(
            "--platform",
            metavar="PLATFORM",
            help="the platform (default: this machine's, else the only locked one;"
            " conda-lock: every locked one)",
        )
        p.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
        p.set_defaults(func=commands.cmd_export)

    if only in (None, "lock"):
        p = sub.add_parser(
            "lock",
            parents=[common],
            help="resolve cema.yaml into cema.lock",
            description="Resolve the envs of cema.yaml that changed (or those --upgrade names)"
            " into cema.lock, and print what changed per env and platform.",
        )
        p.add_argument(
            "--check",
            "--locked",
            action="store_true",
            default=environ.env_flag("CEMA_LOCKED"),
            help="fail if cema.lock is out of date, without solving ($CEMA_LOCKED)",
        )
        _json_option(p, "cli-lock.schema.json")
        p.add_argument(
            "--upgrade",
            nargs="*",
            metavar="NAME",
            help="resolve these envs (all when none named) again even if unchanged",
        )
        p.set_defaults(func=commands.cmd_lock)

    if only in (None, "plan"):
        p = sub.add_parser(
            "plan",
            parents=[common],
            help="show what sync would do",
            description="Show what `cema sync` would do: create, update (with the package"
            " diff), reuse, remove. A stale lock is resolved again in memory (never written);"
            " --locked refuses it instead.",
        )
        _json_option(p, "cli-plan.schema.json")
        _mode_options(p, frozen_help="plan cema.lock as it is, without a freshness check")
        p.add_argument("--prune", action="store_true", help="include removals")
        p.add_argument("-e", "--env", action="append", metavar="NAME", help="only this env")
        p.add_argument(
            "--script",
            choices=["bash", "powershell"],
            help="print the plan as a micromamba script for this shell instead",
        )
        _link_option(p)
        p.set_defaults(func=commands.cmd_plan)

    if only in (None, "sync"):
        p = sub.add_parser(
            "sync",
            parents=[common],
            help="make this machine match cema.lock",
            description="Build or reuse a prefix for each env of cema.lock. Stale envs are"
            " locked again first (and what changed is printed on stderr), unless --locked"
            " or --frozen.",
        )
        _json_option(p, "cli-sync.schema.json")
        _mode_options(
            p, frozen_help="install cema.lock as it is: no freshness check, no solve ($CEMA_FROZEN)"
        )
        p.add_argument(
            "--prune", action="store_true", help="remove prefixes this project no longer uses"
        )
        p.add_argument(
            "--verify",
            action="store_true",
            help="check the files of the envs it keeps (as `cema verify`); rebuild damaged ones",
        )
        _link_option(p)
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
        p.set_defaults(func=commands.cmd_sync)

    if only in (None, "list"):
        p = sub.add_parser(
            "list",
            parents=[common],
            help="list the envs and their prefixes",
            description="List the envs of cema.yaml: kind, package count and prefix (or"
            " `not synced`).",
        )
        _json_option(p, "cli-list.schema.json")
        p.set_defaults(func=commands.cmd_list)

    if only in (None, "verify"):
        p = sub.add_parser(
            "verify",
            parents=[common],
            help="check the installed files of the envs",
            description="Check each env's installed files against its package records"
            " (present, with their size; --full: also their sha256). Exit 1 when one is damaged.",
        )
        p.add_argument("-e", "--env", action="append", metavar="NAME", help="only this env")
        p.add_argument("--full", action="store_true", help="also hash every file (slower)")
        p.set_defaults(func=commands.cmd_verify)

    if only in (None, "run", "shell", "shell-hook"):
        from cema.cli.running import add_parsers

        add_parsers(sub, common, only, mode_options=_mode_options)

    if only in (None, "gc"):
        p = sub.add_parser(
            "gc",
            parents=[common],
            help="remove prefixes no project references",
            description="Remove the store's prefixes that no registered project, Dask or Ray"
            " lock copy, or running worker references.",
        )
        p.add_argument("--dry-run", action="store_true", help="only list them")
        _json_option(p, "cli-gc.schema.json")
        p.add_argument("--all-staging", action="store_true", help="also clear recent staging dirs")
        p.set_defaults(func=commands.cmd_gc)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` when it is certain (else None: build the whole parser).

    Only global options may come before it; ``--project``/``-p``/``--store``/``--color`` take a
    value.
    Anything unusual (``--help``, an abbreviated option, ``--``) gives None.
    """
    given = iter(argv)
    flags = ("-q", "-v", "--quiet", "--verbose", "--no-progress")
    for arg in given:
        if arg in ("--project", "-p", "--store", "--color"):
            next(given, None)
        elif arg in flags or arg.startswith(("--project=", "--store=", "--color=", "-vv")):
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
    from cema.cli.progress import LogHandler

    # `LEVEL: message` on the sys.stderr of the moment (above progress bars), level in colour
    logging.basicConfig(level=level, handlers=[LogHandler()])


def _report(message: str, hint: str | None) -> int:
    """``error: ...`` and ``hint: ...`` on stderr (in colour on a TTY); exit code 1."""
    from cema.cli.progress import paint, stop_all

    stop_all()  # a progress display leaves the screen first
    print(f"{paint('error:', 'error', sys.stderr)} {message}", file=sys.stderr)
    if hint:
        print(f"{paint('hint:', 'hint', sys.stderr)} {hint}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cema`` command: user errors print ``error:``/``hint:`` and exit 1."""
    given = sys.argv[1:] if argv is None else list(argv)
    if given in (["--version"], ["-V"]):  # the common probe, answered before argparse is built
        print(f"cema {__version__}")
        raise SystemExit(0)  # what argparse's version action does
    try:
        # the defaults read the environment ($CEMA_LOCKED...): a bad value is a user error,
        # also for a plain `cema sync` with nothing to do, answered from its stamp
        from cema.cli.environ import check_environment

        check_environment()
        if "sync" in given:
            from cema import stamp

            if stamp.check(given):
                return 0
        parser = build_parser(_command_of(given))
    except CemaError as exc:
        return _report(str(exc), exc.hint)
    args = parser.parse_args(given)
    from cema.cli.progress import set_color

    set_color(args.color)  # `--color auto` wins over $CEMA_COLOR too
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args))
    except CemaError as exc:
        return _report(str(exc), exc.hint)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cema list | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        # a path that is not what it should be (a file where a folder goes, no permission...)
        where = f": {exc.filename}" if exc.filename else ""
        return _report(f"{exc.strerror or exc}{where}", "check that path (and --store, --project).")
    finally:  # a progress display leaves the screen, however the command ended
        if "cema.cli.progress" in sys.modules:
            sys.modules["cema.cli.progress"].stop_all()


def entry() -> None:
    """The console script: ``main()``, then leave without finalizing the interpreter.

    py-rattler's tokio threads can still be handing a result back to Python when ``main()``
    returns; finalizing the interpreter under them crashes (SIGSEGV/SIGABRT) after the work is
    done. Nothing is left to clean up here: flush what was written and exit at once.
    """
    import contextlib

    code = main()
    if "logging" in sys.modules:  # a stamped no-op never imported it
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
