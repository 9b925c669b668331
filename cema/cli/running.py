"""The verbs that use an env rather than build it: ``run``, ``shell``, ``shell-hook``."""

# Each syncs the env first when it is missing or stale (as ``uv run`` does), then activates it.
# What the sync says goes to stderr: stdout belongs to the command (or is the hook script).

from __future__ import annotations

import argparse
import os
import sys

from cema.cli.commands import _mode, _progress, _project
from cema.errors import CemaError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any


def _activated(args: argparse.Namespace) -> tuple[str, Path, dict[str, str]]:
    """Sync env ``args.name`` (``--locked``/``--frozen`` respected), then its activated
    environment: the env's name, its prefix and the variables."""
    from cema.activation import activated_environ

    project = _project(args)
    env_spec = project.spec.env(args.name)
    name = env_spec.name
    result = project.sync(names=[name], mode=_mode(args), reporter=_progress(args))
    if not args.quiet:
        from cema.cli import output

        output.print_relock(project, written=True)
        if not result.plan.is_noop:
            output.print_plan(result.plan, project.store, out=sys.stderr)
    prefix = result.prefixes[name]
    receipt = project.store.receipt(prefix.name)
    kind = receipt.kind if receipt else env_spec.resolved_kind
    env = activated_environ(prefix, kind=kind, name=name, variables=env_spec.variables)
    return name, prefix, env


def _exec(argv: list[str], env: dict[str, str], *, what: str) -> int:
    """Replace this process with ``argv`` (POSIX), or run it and return its code (Windows)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        if os.name == "nt":
            import subprocess

            return subprocess.call(argv, env=env)
        os.execve(argv[0], argv, env)  # noqa: S606 (a program the user named, no shell)
    except FileNotFoundError:
        raise CemaError(
            f"{what} was not found.",
            hint="check the spelling, or add the package that provides it.",
        ) from None
    except PermissionError:
        raise CemaError(
            f"{what} is not executable.", hint="check its permissions (chmod +x), or its path."
        ) from None
    except OSError as exc:
        raise CemaError(
            f"{what} could not be started: {exc.strerror or exc}.",
            hint="check that it is a program for this machine.",
        ) from None


def cmd_run(args: argparse.Namespace) -> int:
    """Run a command in an activated env, syncing the env first when needed."""
    command = list(args.command)
    if command[:1] != ["--"] and command[:1] and command[0].startswith("-") and "--" in command:
        # `cema run NAME --frozen -- CMD`: options after NAME, up to the `--`
        given, command = command[: command.index("--")], command[command.index("--") :]
        for option in given:
            if option not in ("--locked", "--frozen"):
                raise CemaError(
                    f"{option!r} is not an option of `cema run` after NAME.",
                    hint=f"put cema's options before NAME: cema run {option} NAME -- COMMAND",
                )
        if len(set(given)) > 1:
            raise CemaError(
                "--locked and --frozen were both given.", hint="give one of them (or neither)."
            )
        args.mode = given[-1].removeprefix("--")
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise CemaError("no command given.", hint="cema run NAME -- COMMAND [ARGS...]")
    name, _, env = _activated(args)
    import shutil  # not on a no-op's import path

    exe = shutil.which(command[0], path=env["PATH"])
    if exe is None:
        if os.sep not in command[0] and "/" not in command[0]:
            raise CemaError(
                f"{command[0]!r} was not found in environment {name!r}.",
                hint="check the spelling, or add the package that provides it.",
            )
        exe = command[0]
    return _exec([exe, *command[1:]], env, what=f"{command[0]!r} in environment {name!r}")


def _user_shell() -> str:
    """``$SHELL`` (else ``/bin/sh``); on Windows ``%COMSPEC%`` (else ``cmd.exe``)."""
    if os.name == "nt":
        return os.environ.get("SHELL") or os.environ.get("COMSPEC") or "cmd.exe"
    return os.environ.get("SHELL") or "/bin/sh"


def cmd_shell(args: argparse.Namespace) -> int:
    """Start the user's shell with the env activated (``CEMA_SHELL`` names the env)."""
    name, prefix, env = _activated(args)
    env["CEMA_SHELL"] = name
    shell = _user_shell()
    import shutil  # not on a no-op's import path

    exe = shutil.which(shell) or shell
    if not args.quiet and sys.stdin.isatty():
        print(
            f"cema: environment {name!r} activated ({prefix}); `exit` leaves it.", file=sys.stderr
        )
    return _exec([exe], env, what=f"the shell {shell!r} ($SHELL)")


def cmd_shell_hook(args: argparse.Namespace) -> int:
    """Print a script that activates the env in the current shell when evaluated."""
    from cema.shellhook import detect_shell, environ_changes, render_hook

    name, prefix, env = _activated(args)
    changes = environ_changes(os.environ, env)
    shell = args.shell or detect_shell(os.environ)
    for skipped in changes.skipped:
        print(f"warning: {skipped!r} is not a shell variable name: left out", file=sys.stderr)
    comment = f"cema shell-hook: environment {name!r} ({prefix})"
    sys.stdout.write(render_hook(changes, shell, comment=comment))
    return 0


def add_parsers(
    sub: Any, common: argparse.ArgumentParser, only: str | None, *, mode_options: Any
) -> None:
    """The parsers of ``run``, ``shell`` and ``shell-hook`` (``only``: that one alone);
    ``mode_options`` adds ``--locked``/``--frozen`` (``cema.cli._mode_options``)."""
    sync_first = (
        " The env is synced first when it is missing or cema.lock is stale (--locked refuses"
        " a stale lock, --frozen installs the lock as is); what that does goes to stderr."
    )
    frozen_help = "sync cema.lock as it is: no freshness check, no solve ($CEMA_FROZEN)"
    if only in (None, "run"):
        p = sub.add_parser(
            "run",
            parents=[common],
            help="run a command in an activated env",
            description="Run COMMAND in env NAME, activated (PATH, CONDA_PREFIX, activate.d,"
            " the spec's variables)." + sync_first,
        )
        mode_options(p, frozen_help=frozen_help)
        p.add_argument("name", metavar="NAME")
        p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND")
        p.set_defaults(func=cmd_run)
    if only in (None, "shell"):
        p = sub.add_parser(
            "shell",
            parents=[common],
            help="start your shell with an env activated",
            description="Start $SHELL (else /bin/sh; on Windows %%COMSPEC%%) with env NAME"
            " activated and CEMA_SHELL=NAME; `exit` leaves it." + sync_first,
        )
        mode_options(p, frozen_help=frozen_help)
        p.add_argument("name", metavar="NAME")
        p.set_defaults(func=cmd_shell)
    if only in (None, "shell-hook"):
        from cema.shellhook import SHELLS

        p = sub.add_parser(
            "shell-hook",
            parents=[common],
            help="print a script that activates an env in the current shell",
            description="Print the script that activates env NAME in the current shell:"
            ' `eval "$(cema shell-hook NAME)"` (bash, zsh), `cema shell-hook NAME --shell fish'
            " | source`, `cema shell-hook NAME --shell powershell | Out-String |"
            " Invoke-Expression`." + sync_first,
        )
        mode_options(p, frozen_help=frozen_help)
        p.add_argument("name", metavar="NAME")
        p.add_argument(
            "--shell",
            choices=SHELLS,
            help="the script's language (default: from $SHELL, else bash)",
        )
        p.set_defaults(func=cmd_shell_hook)


__all__ = ["add_parsers", "cmd_run", "cmd_shell", "cmd_shell_hook"]
