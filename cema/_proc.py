"""The one helper that runs subprocesses: logs the command, captures output, raises with a tail."""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cema.errors import CommandFailedError

log = logging.getLogger(__name__)
OUTPUT_TAIL_LINES = 25
#: how long an interrupted child gets to stop before it is killed
STOP_TIMEOUT_S = 10.0
#: credentials in URLs, as logs and scripts hide them (broadly: hiding too much is harmless
#: there; the lock, which drops them, uses a stricter token pattern in cema.lock)
URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<secret>[^/@\s]+)@", re.IGNORECASE)
URL_TOKEN = re.compile(r"/t/(?P<secret>[^/\s]+)/")


def redact(text: str) -> str:
    """Hide credentials in URLs (``user:pass@``, anaconda.org ``/t/<token>/``)."""
    return URL_TOKEN.sub("/t/***/", URL_USERINFO.sub(r"\g<scheme>***@", text))


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
    stops the child (terminate, then kill).
    """
    argv = [str(c) for c in cmd]
    log.debug("running: %s", redact(" ".join(argv)))
    last: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL_LINES)
    try:
        proc = subprocess.Popen(
            argv,
            env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
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
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT_S)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    if returncode != 0:
        raise CommandFailedError(
            f"{what} failed (exit code {returncode}):",
            returncode=returncode,
            output_tail="\n".join(last),
            hint=hint,
        )
