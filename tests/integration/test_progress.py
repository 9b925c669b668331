"""Progress and colour: the real ``cema`` in a pseudo-terminal draws spinners, download and
linking bars and a line per finished env, and colours ``error:``/``hint:``; in a pipe, under
``-q``, ``CI``, ``CEMA_NO_PROGRESS``, there is none of it, and ``NO_COLOR``/``--color never``
take the colour away."""

from __future__ import annotations

import fcntl
import functools
import http.server
import os
import re
import select
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.conftest import CLI_TIMEOUT_S, cema_environ

#: any escape sequence; SGR (colour and style) ones alone
ESCAPE = re.compile(r"\x1b[\[\]]")
SGR = re.compile(r"\x1b\[[0-9;]*m")
CONSOLE_SCRIPT = Path(sys.executable).with_name("cema")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")


def cema_command(*args: str) -> list[str]:
    """The console script beside the test interpreter (``python -m cema`` if it has none)."""
    if CONSOLE_SCRIPT.exists():
        return [str(CONSOLE_SCRIPT), *args]
    return [sys.executable, "-m", "cema", *args]


def in_pty(argv: list[str], *, cwd: Path, env: Mapping[str, str]) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal (120 columns) as stdin, stdout and stderr: its exit
    code and everything it wrote."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        argv, stdin=follower, stdout=follower, stderr=follower, cwd=cwd, env=dict(env)
    )
    os.close(follower)
    out = bytearray()
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], CLI_TIMEOUT_S)
            if not ready:
                proc.kill()
                pytest.fail(f"`{' '.join(argv)}` hung; it wrote:\n{out.decode(errors='replace')}")
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
    return proc.wait(timeout=CLI_TIMEOUT_S), out.decode("utf-8", errors="replace")


def tty_environ(store: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    """``cema_environ`` with a real terminal type, no CI, and repodata cached in ``tmp_path``."""
    env = cema_environ(store, {"TERM": "xterm-256color", "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    for name in ("CI", "NO_COLOR", "CEMA_COLOR", "CEMA_NO_PROGRESS"):
        env.pop(name, None)
    env.update(extra)
    return env


def hello_project(make_project, channel: Path) -> Path:
    return make_project(
        f"""\
        version: 1
        channels: ["{channel}"]
        environments:
          hello:
            conda: [cemahello]
        """
    )


class _NoConditionalRequests(http.server.SimpleHTTPRequestHandler):
    """A channel over HTTP that always sends the whole file (no ``304 Not Modified``)."""

    def send_head(self):  # type: ignore[no-untyped-def]
        del self.headers["If-Modified-Since"]
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:  # the base's signature
        pass


@pytest.fixture
def http_channel(conda_forge_channel: Path) -> Iterator[str]:
    """The indexed conda-forge test channel served on 127.0.0.1 (so that rattler downloads)."""
    handler = functools.partial(_NoConditionalRequests, directory=str(conda_forge_channel))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- on a terminal ------------------------------------------------------------------------------


def test_sync_on_a_tty_shows_solve_spinner_download_and_link_bars_and_env_times(
    http_channel: str, make_project, store, tmp_path: Path
) -> None:
    from cema.model.spec import current_platform

    if current_platform() != "linux-64":
        pytest.skip("the conda-forge test archives are linux-64 builds")
    folder = make_project(
        f"""\
        version: 1
        channels: ["{http_channel}"]
        platforms: [linux-64]
        environments:
          tools:
            conda: [xz, openssl]
        """
    )
    code, out = in_pty(cema_command("sync"), cwd=folder, env=tty_environ(store.root, tmp_path))
    assert code == 0, out
    text = SGR.sub("", out)
    assert "resolving tools for linux-64" in text  # the spinner while solving
    assert re.search(r"resolved tools for linux-64 in \d+(ms|\.\ds)", text)
    # a bar per download, with bytes of total and a rate (the openssl archive is 2.9 MB)
    assert re.search(r"openssl +━*.* [\d.]+/2\.9 MB", text), text
    assert re.search(r"[\d.]+ [kM]B/s", text)
    assert re.search(r"tools: linking .* \d/7", text)  # the linking bar, 7 packages
    assert re.search(r"built tools in \d+(ms|\.\ds)", text)  # one line per finished env
    assert "\x1b[?25l" in out  # drawn in place: the cursor hidden while the bars move...
    assert out.count("\x1b[?25h") >= 1  # ...and shown again
    assert SGR.search(out)  # in colour
    # the prefix works: the display is only a display
    done = subprocess.run(
        cema_command("run", "tools", "--", "xz", "--version"),
        cwd=folder,
        env=cema_environ(store.root),
        capture_output=True,
        text=True,
        check=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert "xz (XZ Utils) 5.2.6" in done.stdout


def test_error_and_hint_are_coloured_on_a_tty_and_plain_in_a_pipe(
    store, tmp_path: Path, run_cema
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = tty_environ(store.root, tmp_path)
    code, out = in_pty(cema_command("lock"), cwd=empty, env=env)
    assert code == 1
    assert "\x1b[1;31merror:\x1b[0m no cema.yaml in" in out
    assert "\x1b[36mhint:\x1b[0m run `cema init`" in out
    assert "Traceback" not in out

    piped = run_cema("lock", cwd=empty, env={"TERM": "xterm-256color"}, check=False)
    assert piped.returncode == 1
    assert piped.stderr.startswith("error: no cema.yaml in")
    assert "\nhint: run `cema init`" in piped.stderr
    assert not ESCAPE.search(piped.stderr + piped.stdout)


def test_summaries_are_coloured_on_a_tty(
    local_channel: Path, make_project, store, tmp_path: Path
) -> None:
    folder = hello_project(make_project, local_channel)
    code, out = in_pty(cema_command("sync"), cwd=folder, env=tty_environ(store.root, tmp_path))
    assert code == 0, out
    assert "  \x1b[32m  + cemahello 1.0\x1b[0m" in out  # what the lock added, in green
    assert "\x1b[32mcreate\x1b[0m  hello (conda) -> " in out  # the plan's verb
    # and `cema lock` prints what changed in the same colours
    (folder / "cema.lock").unlink()
    code, out = in_pty(cema_command("lock"), cwd=folder, env=tty_environ(store.root, tmp_path))
    assert code == 0, out
    assert "\x1b[32m  + cemahello 1.0\x1b[0m" in out


# --- off ----------------------------------------------------------------------------------------


def test_a_piped_sync_has_no_escape_codes(local_channel: Path, make_project, run_cema) -> None:
    folder = hello_project(make_project, local_channel)
    # a terminal type that allows colour: only the pipe turns the display off
    done = run_cema("sync", cwd=folder, env={"TERM": "xterm-256color"})
    assert not ESCAPE.search(done.stdout + done.stderr)
    assert "resolving" not in done.stderr and "built hello" not in done.stderr
    assert done.stdout.startswith("create  hello (conda) -> ")


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("-q",), {}),
        ((), {"CI": "true"}),
        ((), {"CEMA_NO_PROGRESS": "1"}),
        (("--no-progress",), {}),
    ],
    ids=["-q", "CI=true", "CEMA_NO_PROGRESS=1", "--no-progress"],
)
def test_progress_is_off_on_a_tty(
    args: tuple[str, ...],
    extra: dict[str, str],
    local_channel: Path,
    make_project,
    store,
    tmp_path: Path,
) -> None:
    folder = hello_project(make_project, local_channel)
    env = tty_environ(store.root, tmp_path, **extra)
    code, out = in_pty(cema_command(*args, "sync"), cwd=folder, env=env)
    assert code == 0, out
    assert "resolving hello" not in out and "building hello" not in out
    assert "resolved hello" not in out and "built hello" not in out
    assert "\x1b[?25l" not in out  # nothing drawn in place
    if "-q" in args:
        assert out.strip() == ""  # only errors, and there are none


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        ((), {"NO_COLOR": "1"}),
        (("--color", "never"), {}),
        (("--color=never",), {"CEMA_COLOR": "always"}),  # the flag wins over its variable
        ((), {"CEMA_COLOR": "never"}),
    ],
    ids=["NO_COLOR", "--color never", "--color=never over CEMA_COLOR", "CEMA_COLOR=never"],
)
def test_colour_is_off_on_a_tty(
    args: tuple[str, ...],
    extra: dict[str, str],
    local_channel: Path,
    make_project,
    store,
    tmp_path: Path,
) -> None:
    folder = hello_project(make_project, local_channel)
    env = tty_environ(store.root, tmp_path, **extra)
    code, out = in_pty(cema_command(*args, "sync"), cwd=folder, env=env)
    assert code == 0, out
    assert "built hello in" in out  # progress is still drawn...
    assert not SGR.search(out)  # ...without colour
    assert "create  hello (conda) -> " in out

    code, out = in_pty(cema_command(*args, "sync", "-e", "nope"), cwd=folder, env=env)
    assert code == 1
    assert "error: " in out and not SGR.search(out)


def test_color_always_colours_a_pipe_and_a_bad_cema_color_is_an_error(
    local_channel: Path, make_project, run_cema
) -> None:
    folder = hello_project(make_project, local_channel)
    forced = run_cema("--color", "always", "sync", "-e", "nope", cwd=folder, check=False)
    assert forced.returncode == 1
    assert forced.stderr.startswith("\x1b[1;31merror:\x1b[0m ")
    bad = run_cema("sync", cwd=folder, env={"CEMA_COLOR": "sometimes"}, check=False)
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == [
        "error: CEMA_COLOR='sometimes' is not one of auto, always, never.",
        "hint: set CEMA_COLOR to auto, always or never (or unset it).",
    ]


def test_a_sync_with_nothing_to_do_never_imports_rich(
    local_channel: Path, make_project, store, tmp_path: Path
) -> None:
    folder = hello_project(make_project, local_channel)
    env = tty_environ(store.root, tmp_path)
    assert in_pty(cema_command("sync"), cwd=folder, env=env)[0] == 0
    # `-e` takes the long way (no stamp): the lock is read, the plan made, nothing built
    argv = [sys.executable, "-X", "importtime", "-m", "cema", "sync", "-e", "hello"]
    code, out = in_pty(argv, cwd=folder, env=env)
    assert code == 0, out
    assert "1 environment(s) up to date." in out
    assert "cema.cli.progress" in out  # the check ran...
    assert not re.search(r"\| +rich(\.|\s)", out)  # ...and rich stayed unloaded
