"""Hostile conditions for workers and engines: connection floods, remote exits, killed hosts."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cema import _proc
from cema.errors import RemoteError
from cema.runtime import Worker
from tests.integration.conftest_runtime import eventually, process_gone, worker_env

pytestmark = pytest.mark.hostile

PLUGIN = Path(__file__).resolve().parent / "hostile_plugin.py"
REPO = Path(__file__).resolve().parents[2]
#: the env's python is the host's own: no venv to build
PYTHON = Path(sys.executable)
LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="prlimit, /proc and the parent-death signal")
#: executor_server.MAX_PENDING: clients beyond this many awaiting authentication are closed
MAX_PENDING = 64
#: idle connections in a flood: with 2 descriptors each, far beyond the worker's limit below
FLOOD = 600
#: the worker's descriptor limit during a flood (the default, 20000 here, is too high to reach)
FLOOD_NOFILE = 256
#: how soon a child must be gone once its host is killed
DEATH_S = 2.0


@pytest.fixture
def worker() -> Iterator[Worker]:
    started = Worker.start(python=PYTHON, env=worker_env(PYTHON), name="hostile")
    yield started
    started.close()


# --- connection floods ------------------------------------------------------------------------


def _connect(address: str) -> socket.socket | None:
    """A client that never speaks; None while the backlog is full.

    ``ConnectionRefusedError``: nobody listens any more (the worker is gone).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.connect(address)
    except BlockingIOError:
        sock.close()
        return None
    except OSError:
        sock.close()
        raise
    return sock


def _flood(address: str, count: int, *, within_s: float) -> list[socket.socket]:
    """``count`` idle connections (polling while the backlog is full), fewer if the worker dies."""
    socks: list[socket.socket] = []

    def more() -> bool:
        try:
            sock = _connect(address)
        except ConnectionRefusedError:
            return True
        if sock is not None:
            socks.append(sock)
        return len(socks) >= count

    eventually(more, within_s=within_s)
    return socks


def _closed(sock: socket.socket) -> bool:
    """Whether the worker closed this connection (EOF, no challenge sent)."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _challenged(sock: socket.socket) -> bool:
    """Whether the worker accepted this connection and sent it the challenge."""
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _limit_descriptors(pid: int, soft: int) -> None:
    import resource

    hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def _own_descriptors(at_least: int) -> Iterator[None]:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= at_least:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < at_least:
        pytest.skip(f"the test needs {at_least} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (at_least, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@linux_only
def test_a_flood_of_idle_connections_does_not_end_the_worker(worker: Worker) -> None:
    _limit_descriptors(worker.pid, FLOOD_NOFILE)
    with _own_descriptors(FLOOD + 100):
        socks = _flood(worker.address, FLOOD, within_s=30)
        try:
            assert worker.call(PLUGIN, "echo", ("served",)) == "served"
            assert worker.alive()
            assert len(socks) == FLOOD
            # beyond the pending cap, clients are closed at once instead of held
            assert eventually(lambda: sum(map(_closed, socks)) >= FLOOD - MAX_PENDING)
            assert _descriptors(worker.pid) < 2 * MAX_PENDING + 32
        finally:
            for sock in socks:
                sock.close()
    assert worker.call(PLUGIN, "echo", ("still served",)) == "still served"


@linux_only
def test_out_of_descriptors_the_worker_pauses_accepting_and_serves_on(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    assert worker.call(PLUGIN, "echo", (1,)) == 1  # the plugin is imported: no file to open
    _limit_descriptors(worker.pid, _descriptors(worker.pid) + 8)
    socks: list[socket.socket] = []

    def starved() -> bool:
        try:
            sock = _connect(worker.address)
        except ConnectionRefusedError:
            return True  # the worker is gone: the assertions below say so
        if sock is not None:
            socks.append(sock)
        return "cannot accept connections for now" in caplog.text

    try:
        eventually(starved)
        assert worker.call(PLUGIN, "echo", ("served",)) == "served"
        assert worker.alive()
        assert "cannot accept connections for now" in caplog.text
    finally:
        for sock in socks:
            sock.close()
    # the clients are gone, their descriptors freed: accepting resumes
    probe: list[socket.socket] = []

    def accepted() -> bool:
        if not probe:
            sock = _connect(worker.address)
            probe.extend([sock] if sock is not None else [])
        return bool(probe) and _challenged(probe[0])

    try:
        assert eventually(accepted)
    finally:
        for sock in probe:
            sock.close()
    assert worker.alive()


# --- what ends a program, raised in the worker -----------------------------------------------


@pytest.mark.parametrize(
    ("how", "type_name"),
    [("exit", "SystemExit"), ("interrupt", "KeyboardInterrupt"), ("generator", "GeneratorExit")],
)
def test_remote_base_exceptions_arrive_as_remote_errors(
    worker: Worker, how: str, type_name: str
) -> None:
    caught: BaseException | None = None
    try:
        worker.call(PLUGIN, "leave", (how,))
    except BaseException as exc:  # a SystemExit or KeyboardInterrupt must not end the test run
        caught = exc
    assert isinstance(caught, RemoteError), repr(caught)
    assert caught.remote_type == type_name
    assert "in leave" in caught.remote_traceback
    assert worker.call(PLUGIN, "echo", ("serves on",)) == "serves on"
    assert worker.alive()


@pytest.mark.skipif(os.name == "nt", reason="pthread_kill")
def test_a_local_ctrl_c_still_interrupts_the_host(worker: Worker, tmp_path: Path) -> None:
    marker = tmp_path / "running"
    main = threading.get_ident()

    def interrupt() -> None:
        if eventually(marker.exists):  # the call runs: the host waits for its reply
            signal.pthread_kill(main, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupter = threading.Thread(target=interrupt)
    try:
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            worker.call(PLUGIN, "touch_and_sleep", (str(marker), 60))
    finally:
        interrupter.join()
        signal.signal(signal.SIGINT, previous)
    assert worker.call(PLUGIN, "echo", ("serves on",)) == "serves on"


# --- children die with their host ------------------------------------------------------------


def _thread_gone(thread: threading.Thread) -> Callable[[], bool]:
    """Whether the OS thread ended (``join`` returns a little before it does)."""
    return lambda: not Path(f"/proc/self/task/{thread.native_id}").exists()


@linux_only
def test_a_worker_started_from_a_thread_that_ended_lives_on() -> None:
    box: list[Worker] = []
    starter = threading.Thread(
        target=lambda: box.append(Worker.start(python=PYTHON, env=worker_env(PYTHON), name="t"))
    )
    starter.start()
    starter.join()
    assert eventually(_thread_gone(starter))
    with box[0] as worker:
        assert worker.call(PLUGIN, "echo", ("alive",)) == "alive"


HOST_SCRIPT = """
import os, sys, threading
from pathlib import Path
from cema.runtime import Worker
plugin, marker = sys.argv[1:3]
python = Path(sys.executable)
env = dict(os.environ, PATH=str(python.parent) + os.pathsep + os.environ["PATH"])
box = []
start = lambda: box.append(Worker.start(python=python, env=env, name="gil"))
starter = threading.Thread(target=start)  # hosts start workers from threads that end
starter.start()
starter.join()
print(box[0].pid, flush=True)
box[0].call(plugin, "hold_the_gil", (marker,))
"""


@contextlib.contextmanager
def _reaping(pids: list[int]) -> Iterator[None]:
    """Kill whatever of ``pids`` still runs when the test ends (a failed test leaves them)."""
    try:
        yield
    finally:
        for pid in pids:
            if not process_gone(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


@linux_only
def test_a_worker_holding_the_gil_dies_with_its_killed_host(tmp_path: Path) -> None:
    marker = tmp_path / "holding"
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, str(PLUGIN), str(marker)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    pids: list[int] = []
    with _reaping(pids):
        try:
            assert host.stdout is not None
            pids.append(int(host.stdout.readline()))
            assert eventually(marker.exists), "the worker never ran the call"
            assert not process_gone(pids[0])
            host.kill()
            host.wait()
            assert eventually(lambda: process_gone(pids[0]), within_s=DEATH_S)
        finally:
            host.kill()
            host.wait()


ENGINE_SCRIPT = """
import sys, threading
from cema import _proc
function, where, pidfile = sys.argv[1:4]
child = ["sh", "-c", f"echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile} && exec sleep 60"]
run = lambda: getattr(_proc, function)(child, what="a sleeper")
if where == "thread":
    runner = threading.Thread(target=run)
    runner.start()
    runner.join()
else:
    run()
"""


@linux_only
@pytest.mark.parametrize("where", ["main", "thread"])
@pytest.mark.parametrize("function", ["run", "stream"])
def test_an_engine_process_dies_with_its_killed_parent(
    function: str, where: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", ENGINE_SCRIPT, function, where, str(pidfile)], cwd=REPO
    )
    pids: list[int] = []
    with _reaping(pids):
        try:
            assert eventually(pidfile.exists), "the child never started"
            pids.append(int(pidfile.read_text()))
            assert not process_gone(pids[0])
            parent.kill()
            parent.wait()
            assert eventually(lambda: process_gone(pids[0]), within_s=DEATH_S)
        finally:
            parent.kill()
            parent.wait()


@linux_only
def test_a_child_spawned_from_a_thread_that_ended_lives_on() -> None:
    box: list[subprocess.Popen[str]] = []

    def start() -> None:
        argv = ["sh", "-c", "read line; echo got $line"]
        box.append(
            _proc.spawn(argv, env=None, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )

    starter = threading.Thread(target=start)
    starter.start()
    starter.join()
    assert eventually(_thread_gone(starter))
    proc = box[0]
    try:
        out, _ = proc.communicate("ping\n", timeout=30)
    finally:
        _proc.stop(proc, grace_s=0)
    assert (out, proc.returncode) == ("got ping\n", 0)


@linux_only
def test_the_spawner_thread_is_not_one_per_spawn() -> None:
    def spawn_true() -> None:
        _proc.stop(_proc.spawn(["true"], env=None), grace_s=5)

    for _ in range(3):
        runner = threading.Thread(target=spawn_true)
        runner.start()
        runner.join()
    names = [t.name for t in threading.enumerate()]
    assert names.count("cema-spawner") <= 1
