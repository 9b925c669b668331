"""The one helper that runs subprocesses: logs, captures, raises with a tail; one stop ladder."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cema.errors import CommandFailedError
from cema.model.urls import redact

log = logging.getLogger(__name__)
OUTPUT_TAIL_LINES = 25
#: how long an interrupted child gets to stop before it is killed
STOP_TIMEOUT_S = 10.0
#: in the stop ladder, how long a child gets after SIGTERM before SIGKILL, unless told otherwise
TERMINATE_GRACE_S = 2.0
#: SIGKILL where it exists (Windows kills with taskkill instead)
SIGKILL: int = getattr(signal, "SIGKILL", signal.SIGTERM)


def tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(
    cmd: Sequence[str | Path],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    hint: str | None = None,
    timeout_s: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (no shell), capturing output; ``CommandFailedError`` names ``what`` failed."""
    argv = [str(c) for c in cmd]
    log.debug("running: %s", redact(" ".join(argv)))
    try:
        proc = subprocess.run(
            argv,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        raise CommandFailedError(f"{what} failed: {argv[0]} was not found.", hint=hint) from None
    except subprocess.TimeoutExpired as exc:
        raise CommandFailedError(
            f"{what} did not finish within {timeout_s:.0f} s.",
            output_tail=redact(tail(str(exc.stderr or ""))),
            hint=hint,
        ) from None
    if proc.returncode != 0:
        output = (proc.stderr or "") + (proc.stdout or "")
        raise CommandFailedError(
            f"{what} failed (exit code {proc.returncode}):",
            returncode=proc.returncode,
            output_tail=redact(tail(output)),
            hint=hint,
        )
    return proc


def stream(
    cmd: Sequence[str | Path],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    hint: str | None = None,
) -> None:
    """Run ``cmd`` (no shell), handing each output line (redacted) to ``on_line`` as it comes.

    ``CommandFailedError`` names ``what`` and carries the output's tail; an interrupted run
    stops the child and its process group (``stop``: terminate, then kill).
    """
    argv = [str(c) for c in cmd]
    log.debug("running: %s", redact(" ".join(argv)))
    last: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL_LINES)
    try:
        proc = spawn(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise CommandFailedError(f"{what} could not start ({exc}).", hint=hint) from None
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = redact(raw.rstrip("\n"))
            last.append(line)
            if on_line is not None:
                on_line(line)
        returncode = proc.wait()
    except BaseException:
        stop(proc, grace_s=0.0, terminate_grace_s=STOP_TIMEOUT_S)
        raise
    if returncode != 0:
        raise CommandFailedError(
            f"{what} failed (exit code {returncode}):",
            returncode=returncode,
            output_tail="\n".join(last),
            hint=hint,
        )


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: Path | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    pass_fds: Sequence[int] = (),
    text: bool = False,
) -> subprocess.Popen[Any]:
    """Start ``argv`` in a process group of its own, so ``stop`` can signal its whole tree.

    POSIX: a new session (the group id is the child's pid). ``text``: line-buffered text, with
    undecodable bytes replaced.
    """
    options: dict[str, Any] = {"text": True, "errors": "replace", "bufsize": 1} if text else {}
    if os.name == "nt":  # pragma: no cover - Windows
        options["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    else:
        options.update(start_new_session=True, pass_fds=tuple(pass_fds))
    return subprocess.Popen(
        list(argv),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        **options,
    )


def signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    """Send ``sig`` to the process group of a child started by ``spawn``: grandchildren too."""
    if os.name == "nt":  # pragma: no cover - Windows has no process groups to signal
        if sig == signal.SIGTERM:
            proc.terminate()
        else:
            subprocess.run(
                ["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False
            )
        return
    # the group id is the child's pid (a new session); while the child is unreaped or any member
    # remains, that id cannot belong to anyone else
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(
    proc: subprocess.Popen[Any],
    *,
    ask: Callable[[], None] | None = None,
    grace_s: float,
    terminate_grace_s: float = TERMINATE_GRACE_S,
) -> int:
    """The stop ladder: ``ask()``, wait ``grace_s``; SIGTERM the group, wait; SIGKILL it.

    Always reaps the child, and kills whatever it left running in its group. Returns the exit
    code (negative: killed by that signal).
    """
    if ask is not None:
        ask()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.debug("pid %d still runs after %g s; terminating its process group", proc.pid, grace_s)
        signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=terminate_grace_s)
        except subprocess.TimeoutExpired:
            log.debug("pid %d ignored SIGTERM; killing its process group", proc.pid)
            signal_group(proc, SIGKILL)
            proc.wait()
    signal_group(proc, SIGKILL)  # whatever the child left running in its group
    return proc.returncode
