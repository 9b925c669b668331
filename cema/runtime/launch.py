"""Starting the executor server: private socket, key over stdin, handshake, then the channel."""

# The host binds and listens on a socket in a fresh 0700 directory *before* starting the worker
# and hands the listening socket down (pass_fds), so the host can connect at once while the
# worker's interpreter is still booting: no polling for a socket file, no sleeping, no stdout
# parsing. The worker answers on the connection only after the mutual HMAC challenge, with a
# HELLO that carries the protocol version. A watchdog kills the worker when the handshake takes
# longer than the timeout; a worker that dies early closes the only listening socket, which
# resets our connection: both end the wait at once.

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any, Protocol

from cema import _proc
from cema._internal import protocol
from cema.errors import ProtocolError, WorkerStartError
from cema.runtime import process

#: the server file, run by path: Cema is not installed in the env
SERVER_PATH = Path(__file__).resolve().parent.parent / "_internal" / "executor_server.py"
AUTHKEY_BYTES = 32
#: on Windows the worker creates the named pipe; we retry connecting this often meanwhile
PIPE_RETRY_S = 0.01

#: the worker folders in the temp dir: FOLDER_PREFIX, the host's pid, random
FOLDER_PREFIX = "cema-worker-"

log = logging.getLogger(__name__)


def clean_orphans(tmp: Path | None = None, *, dry_run: bool = False) -> list[Path]:
    """Remove what killed hosts (and their workers) left: worker folders and segments.

    Returns what it removed (``dry_run``: what it would remove); ``cema gc`` says it.
    """
    root = Path(tmp or tempfile.gettempdir())
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for folder in sorted(root.glob(f"{FOLDER_PREFIX}*-*")):
            pid = folder.name[len(FOLDER_PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and not protocol.alive(int(pid)):
                found.append(folder)
                if not dry_run:
                    protocol.unlink_orphans(str(folder))  # spilled segments, whoever owns them
                    shutil.rmtree(folder, ignore_errors=True)
    if protocol.POOLED:
        found += [Path(path) for path in protocol.unlink_orphans(dry_run=dry_run)]
    return found


class Channel(Protocol):
    """What the session needs from a transport (``protocol.SocketChannel`` or ``PipeChannel``)."""

    def send(self, frame: bytes) -> None: ...
    def recv(self) -> bytes | bytearray: ...
    def poll(self, timeout_s: float) -> bool: ...
    def shutdown(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Launched:
    """A worker that finished the handshake."""

    proc: subprocess.Popen[bytes]
    channel: Channel
    pump: process.OutputPump
    folder: Path
    address: str
    hello: Mapping[str, Any] = field(default_factory=dict)


def server_argv(python: Path) -> list[str]:
    """The worker's command line.

    ``-u``: output reaches the host's log as it is written. Not ``-I``: the env's variables
    (PYTHONPATH among them) must apply; the server drops its own folder from ``sys.path``.
    """
    return [os.fspath(python), "-u", os.fspath(SERVER_PATH)]


def launch(
    *,
    python: Path,
    env: Mapping[str, str],
    name: str,
    cwd: Path | None,
    capture_output: bool,
    timeout_s: float,
) -> Launched:
    """Start the worker and return it once it has proven it holds the key, or raise."""
    clean_orphans()
    # mkdtemp makes it 0700; the pid in its name lets a later launch remove it if we are killed
    folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))
    authkey = secrets.token_bytes(AUTHKEY_BYTES)
    listener: socket.socket | None = None
    if os.name == "posix":
        address = str(folder / "worker.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(address)
        listener.listen(8)
        fd: int | None = listener.fileno()
    else:  # pragma: no cover - Windows: the worker creates the named pipe itself
        address = rf"\\.\pipe\cema-{secrets.token_hex(8)}"
        fd = None
    try:
        output = subprocess.PIPE if capture_output else None
        proc: subprocess.Popen[bytes] = _proc.spawn(
            server_argv(python),
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=output,
            pass_fds=() if listener is None else (listener.fileno(),),
        )
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise WorkerStartError(
            f"Cannot start worker {name!r} with {python}: {exc}.",
            hint="Check that the environment's python exists and runs.",
        ) from exc
    finally:
        if listener is not None:
            listener.close()  # the worker holds it now; when it dies, pending connects reset
    pump = process.OutputPump(proc, logging.getLogger(f"cema.worker.{name}"))
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _proc.signal_group(proc, _proc.SIGKILL)

    watchdog = threading.Timer(timeout_s, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        assert proc.stdin is not None
        proc.stdin.write(protocol.bootstrap_line(authkey, fd, address))
        proc.stdin.flush()
        channel = channel_for(_connect(address, authkey, proc))
        hello = _read_hello(channel, name)
    except Exception as exc:
        _proc.signal_group(proc, _proc.SIGKILL)
        code = proc.wait()
        pump.join()
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, ProtocolError):
            raise
        why = (
            f"did not finish the handshake within {timeout_s:g} s"
            if expired.is_set()
            else f"{process.describe_exit(code)} before the handshake"
        )
        tail = pump.stderr_tail()
        raise WorkerStartError(
            f"Worker {name!r} ({python}) {why}." + (f"\n{tail.rstrip()}" if tail.strip() else ""),
            hint="Run the environment's python by hand to see whether it starts.",
        ) from exc
    finally:
        watchdog.cancel()
    log.debug("worker %r pid %d ready (python %s)", name, proc.pid, hello.get("python"))
    return Launched(
        proc=proc, channel=channel, pump=pump, folder=folder, address=address, hello=hello
    )


def _connect(address: str, authkey: bytes, proc: subprocess.Popen[bytes]) -> Connection:
    if os.name == "posix":
        return Client(address, family="AF_UNIX", authkey=authkey)
    while True:  # pragma: no cover - Windows
        try:
            return Client(address, family="AF_PIPE", authkey=authkey)
        except FileNotFoundError:
            try:
                proc.wait(timeout=PIPE_RETRY_S)  # waits, and notices an early death
            except subprocess.TimeoutExpired:
                continue
            raise


def _read_hello(channel: Channel, name: str) -> Mapping[str, Any]:
    kind, _, _, body, _ = protocol.decode(
        channel.recv(), inbox=protocol.Inbox(), outbox=protocol.Outbox(log.warning)
    )
    if kind != protocol.HELLO:
        raise ProtocolError(f"Worker {name!r} did not start with a handshake (kind {kind}).")
    hello = pickle.loads(body)  # noqa: S301 - the worker proved it holds the key
    if not isinstance(hello, dict) or hello.get("protocol") != protocol.PROTOCOL_VERSION:
        got = hello.get("protocol") if isinstance(hello, dict) else hello
        raise ProtocolError(
            f"Worker {name!r} speaks protocol {got}, the host {protocol.PROTOCOL_VERSION}.",
            hint=f"The server file {SERVER_PATH} and this Cema come from different versions.",
        )
    return hello


def channel_for(conn: Connection) -> Channel:
    """The channel over an authenticated connection (which it takes over)."""
    if os.name != "posix":  # pragma: no cover - Windows
        return protocol.PipeChannel(conn)
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    conn.close()
    return protocol.SocketChannel(sock)
