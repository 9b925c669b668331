"""Worker runtime with real processes: calls, errors, modules, proxies, output, lifecycle."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Client
from pathlib import Path

import pytest

from cema.errors import (
    RemoteError,
    WorkerCrashedError,
    WorkerError,
    WorkerStartError,
    WorkerTimeoutError,
)
from cema.runtime import ModuleProxy, Worker
from tests.integration.conftest_runtime import (
    BASIC,
    DATA,
    StartWorker,
    eventually,
    find_python,
    process_gone,
    worker_env,
)

# the fixtures (venv_python, start_worker, worker, numpy_python) live beside us, not in conftest
pytest_plugins = ["tests.integration.runtime_fixtures"]


# --- calls ------------------------------------------------------------------------------------


def test_call_returns_the_result(worker: Worker) -> None:
    assert worker.alive()
    assert worker.call(BASIC, "echo", ({"a": [1, 2.5, None]},)) == {"a": [1, 2.5, None]}
    assert worker.call(BASIC, "python_version") == worker.python_version.rsplit(".", 1)[0]


def test_keyword_arguments(worker: Worker) -> None:
    assert worker.call(BASIC, "add", (2,), {"b": 3, "scale": 10}) == 50


@pytest.mark.parametrize("version", ["3.8", "3.13"])
def test_server_runs_under_other_pythons(
    version: str, venv_python: Callable[[str], Path], start_worker: StartWorker
) -> None:
    worker = start_worker(venv_python(version), name=f"py{version}")
    assert worker.call(BASIC, "python_version") == version
    with pytest.raises(ValueError, match="old"):
        worker.call(BASIC, "raise_value_error", ("old",))
    assert worker.close() == 0


def test_module_by_name_and_by_path(
    venv_python: Callable[[str], Path], start_worker: StartWorker
) -> None:
    worker = start_worker(venv_python("3.12"), extra_env={"PYTHONPATH": str(DATA)})
    assert worker.call("json", "dumps", ([1, 2],)) == "[1, 2]"
    assert worker.call("basic", "add", (1, 2)) == 3  # a module name found on PYTHONPATH
    relative = os.path.relpath(BASIC)  # resolved against the host's working directory
    assert worker.call(relative, "add", (1,)) == 2


def test_two_plugins_main_py_do_not_collide(worker: Worker) -> None:
    a = worker.import_module(DATA / "plugin_a" / "main.py")
    b = worker.import_module(DATA / "plugin_b" / "main.py")
    assert (a.which(), b.which(), a.which()) == ("a", "b", "a")


def test_proxy_lists_functions_and_refuses_unknown_names(worker: Worker) -> None:
    proxy = worker.import_module(BASIC)
    assert isinstance(proxy, ModuleProxy)
    assert {"echo", "add", "spin", "make_point"} <= set(dir(proxy))
    assert "PluginError" in dir(proxy)  # classes are callables too
    assert proxy.add(1, b=2) == 3
    with pytest.raises(AttributeError, match=r"no function 'nope'; available: .*echo"):
        proxy.nope  # noqa: B018
    assert worker.functions("json") == sorted(
        ["dump", "dumps", "load", "loads", "JSONDecoder", "JSONDecodeError", "JSONEncoder"]
    )


def test_working_directory_and_inherited_output(
    venv_python: Callable[[str], Path], start_worker: StartWorker, tmp_path: Path
) -> None:
    worker = start_worker(venv_python("3.12"), cwd=tmp_path, log_output_in_thread=False)
    assert worker.call("os", "getcwd") == str(tmp_path.resolve())
    with pytest.raises(WorkerCrashedError) as info:
        worker.call(BASIC, "exit_hard", (4,))
    assert info.value.exitcode == 4
    assert info.value.stderr_tail == ""  # stderr went to the host's own


# --- errors -------------------------------------------------------------------------------------


def test_missing_function_and_broken_module(worker: Worker, tmp_path: Path) -> None:
    with pytest.raises(AttributeError, match="no_such_function"):
        worker.call(BASIC, "no_such_function")
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    with pytest.raises(SyntaxError):
        worker.import_module(broken)
    assert worker.call(BASIC, "echo", (1,)) == 1


def test_builtin_exception_arrives_as_its_own_type(worker: Worker) -> None:
    with pytest.raises(ValueError, match="bad input") as info:
        worker.call(BASIC, "raise_value_error", ("bad input",))
    remote = info.value.__cema_remote_traceback__  # type: ignore[attr-defined]
    assert "raise ValueError(message)" in remote
    assert "basic.py" in remote
    assert "executor_server" not in remote


def test_plugin_exception_becomes_remote_error(worker: Worker) -> None:
    with pytest.raises(RemoteError) as info:
        worker.call(BASIC, "raise_plugin_error", ("only in the worker",))
    assert info.value.remote_type == "basic.PluginError"
    assert info.value.remote_message == "only in the worker"
    assert "raise PluginError(message)" in info.value.remote_traceback
    assert worker.call(BASIC, "echo", (1,)) == 1


@pytest.mark.parametrize(("kind", "type_name"), [("lambda", "function"), ("lock", "lock")])
def test_unpicklable_result_names_its_type_and_the_worker_serves_on(
    worker: Worker, kind: str, type_name: str
) -> None:
    pattern = rf"returned a \S*{type_name}\S*, which cannot be pickled"
    with pytest.raises(WorkerError, match=pattern):
        worker.call(BASIC, "unpicklable", (kind,))
    assert worker.call(BASIC, "echo", ("still here",)) == "still here"


def test_result_the_host_cannot_unpickle_names_its_type(worker: Worker) -> None:
    with pytest.raises(WorkerError, match=r"is a basic\.Point, which cannot be unpickled"):
        worker.call(BASIC, "make_point", (1,))
    assert worker.call(BASIC, "echo", (2,)) == 2


def test_unpicklable_argument_is_refused_in_the_host(worker: Worker) -> None:
    with pytest.raises(WorkerError, match="cannot be pickled"):
        worker.call(BASIC, "echo", (threading.Lock(),))
    assert worker.call(BASIC, "echo", (3,)) == 3


def test_client_without_the_key_is_refused_and_the_worker_serves_on(worker: Worker) -> None:
    from multiprocessing import AuthenticationError

    assert Path(worker.address).parent.stat().st_mode & 0o777 == 0o700
    with pytest.raises(AuthenticationError):
        Client(worker.address, family="AF_UNIX", authkey=b"not the key")
    assert worker.call(BASIC, "echo", ("served",)) == "served"


def test_hard_exit_reports_the_exit_code_and_stderr(worker: Worker) -> None:
    with pytest.raises(WorkerCrashedError) as info:
        worker.call(BASIC, "exit_hard", (3,))
    assert info.value.exitcode == 3
    assert "about to exit with 3" in info.value.stderr_tail
    assert not worker.alive()
    with pytest.raises(WorkerCrashedError, match="exited with code 3"):
        worker.call(BASIC, "echo", (1,))


def test_segfault_reports_the_signal(worker: Worker) -> None:
    with pytest.raises(WorkerCrashedError, match="SIGSEGV") as info:
        worker.call(BASIC, "segfault")
    assert info.value.exitcode == -11
    assert "Segmentation fault" in info.value.stderr_tail  # faulthandler's report


def test_timeout_stops_an_endless_call(worker: Worker) -> None:
    started = time.monotonic()
    with pytest.raises(WorkerTimeoutError, match=r"did not finish within 1 s"):
        worker.call(BASIC, "spin", timeout=1)
    assert time.monotonic() - started < 5
    assert not worker.alive()
    with pytest.raises(WorkerCrashedError, match="exceeded its timeout"):
        worker.call(BASIC, "echo", (1,))


def test_proxy_timeout(worker: Worker) -> None:
    proxy = worker.import_module(BASIC)
    assert proxy.sleep.with_timeout(10)(0.01) == 0.01
    with pytest.raises(WorkerTimeoutError):
        proxy.sleep.with_timeout(0.2)(30)


# --- concurrency -------------------------------------------------------------------------------


def test_eight_threads_each_get_their_own_results(worker: Worker) -> None:
    proxy = worker.import_module(BASIC)
    wrong: list[tuple[object, object]] = []
    errors: list[BaseException] = []

    def run(thread: int) -> None:
        try:
            for i in range(500):
                got = proxy.echo((thread, i))
                if got != (thread, i):
                    wrong.append((got, (thread, i)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert wrong == []


def test_a_long_call_does_not_block_a_short_one(worker: Worker, tmp_path: Path) -> None:
    started_flag = tmp_path / "started"
    done = threading.Event()

    def long_call() -> None:
        worker.call(BASIC, "touch_and_sleep", (str(started_flag), 3))
        done.set()

    thread = threading.Thread(target=long_call)
    thread.start()
    assert eventually(started_flag.exists)  # the long call runs in the worker
    started = time.monotonic()
    assert worker.call(BASIC, "echo", ("quick",), timeout=2.5) == "quick"
    assert time.monotonic() - started < 1.5
    assert not done.is_set()
    thread.join(10)
    assert done.is_set()


def test_pending_calls_all_fail_when_the_worker_dies(worker: Worker, tmp_path: Path) -> None:
    results: list[BaseException | object] = []
    flags = [tmp_path / f"started-{i}" for i in range(3)]

    def slow(flag: Path) -> None:
        try:
            results.append(worker.call(BASIC, "touch_and_sleep", (str(flag), 30)))
        except BaseException as exc:  # collected for the assertion
            results.append(exc)

    threads = [threading.Thread(target=slow, args=(flag,)) for flag in flags]
    for thread in threads:
        thread.start()
    assert eventually(lambda: all(flag.exists() for flag in flags))
    with pytest.raises(WorkerCrashedError):
        worker.call(BASIC, "exit_hard", (5,))
    for thread in threads:
        thread.join(10)
    assert len(results) == 3
    assert all(isinstance(r, WorkerCrashedError) and r.exitcode == 5 for r in results)


# --- output -------------------------------------------------------------------------------------


def test_output_reaches_logging_line_by_line(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=f"cema.worker.{worker.name}")
    worker.call(BASIC, "say", ("hello\nworld",))

    def logged() -> set[tuple[str, int, str]]:
        return {(r.name, r.levelno, r.getMessage()) for r in caplog.records}

    name = f"cema.worker.{worker.name}"
    expected = {
        (name, logging.INFO, "out: hello"),
        (name, logging.INFO, "world"),
        (name, logging.WARNING, "err: hello"),
        (name, logging.WARNING, "world"),
    }
    assert eventually(lambda: expected <= logged()), logged()


# --- lifecycle ----------------------------------------------------------------------------------


def test_close_is_idempotent_and_leaves_no_zombie(worker: Worker) -> None:
    pid = worker.pid
    folder = Path(worker.address).parent
    assert worker.close() == 0
    assert worker.close() == 0
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped
    assert process_gone(pid)
    assert not folder.exists()
    with pytest.raises(WorkerError, match="is closed"):
        worker.call(BASIC, "echo", (1,))


def test_close_kills_grandchildren(worker: Worker) -> None:
    grandchild = worker.call(BASIC, "spawn_sleeper")
    assert not process_gone(grandchild)
    worker.close()
    assert eventually(lambda: process_gone(grandchild), within_s=5)


def test_an_interrupted_command_stops_with_the_same_ladder(tmp_path: Path) -> None:
    """``_proc.stream`` on interrupt climbs the workers' ladder: the group's grandchildren go."""
    from cema import _proc

    pidfile = tmp_path / "sleeper.pid"
    script = f"sleep 60 & echo $! > {pidfile}; echo started; wait"

    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        _proc.stream(["sh", "-c", script], what="a sleeper", on_line=interrupt)
    assert time.monotonic() - started < _proc.STOP_TIMEOUT_S
    assert eventually(lambda: process_gone(int(pidfile.read_text())), within_s=5)


def test_context_manager(venv_python: Callable[[str], Path]) -> None:
    python = venv_python("3.12")
    with Worker.start(python=python, env=worker_env(python), name="ctx") as worker:
        assert worker.call(BASIC, "environ", ("VIRTUAL_ENV",)) == str(python.parent.parent)
        pid = worker.pid
    assert not worker.alive()
    assert process_gone(pid)


def test_worker_exits_when_the_host_is_killed(venv_python: Callable[[str], Path]) -> None:
    import signal
    import subprocess
    import sys

    python = venv_python("3.12")
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, str(python)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert host.stdout is not None
        worker_pid = int(host.stdout.readline())
        assert not process_gone(worker_pid)
        host.send_signal(signal.SIGKILL)
        host.wait()
        assert eventually(lambda: process_gone(worker_pid), within_s=1.0)
    finally:
        host.kill()
        host.wait()


def test_workers_are_closed_at_interpreter_exit(venv_python: Callable[[str], Path]) -> None:
    import subprocess
    import sys

    python = venv_python("3.12")
    script = HOST_SCRIPT.replace("threading.Event().wait()", "")  # exit without close()
    host = subprocess.run(
        [sys.executable, "-c", script, str(python)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
        check=True,
    )
    worker_pid = int(host.stdout.split()[0])
    # closed (and reaped) by the host's exit handler, not merely dying after it: gone already
    assert process_gone(worker_pid)


HOST_SCRIPT = """
import os, sys, threading
from pathlib import Path
from cema.runtime import Worker
python = Path(sys.argv[1])
env = dict(os.environ, PATH=str(python.parent) + os.pathsep + os.environ["PATH"])
worker = Worker.start(python=python, env=env, name="orphan")
print(worker.pid, flush=True)
threading.Event().wait()
"""


def test_start_failures_are_worker_start_errors(tmp_path: Path) -> None:
    with pytest.raises(WorkerStartError, match="Cannot start worker"):
        Worker.start(python=tmp_path / "no-python", env=dict(os.environ), name="missing")
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'not a python' >&2\nexit 7\n")
    fake.chmod(0o755)
    with pytest.raises(WorkerStartError, match=r"exited with code 7 before the handshake") as info:
        Worker.start(python=fake, env=dict(os.environ), name="fake")
    assert "not a python" in str(info.value)


def test_start_timeout(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(WorkerStartError, match=r"did not finish the handshake within 0\.5 s"):
        Worker.start(python=fake, env=dict(os.environ), name="slow", start_timeout_s=0.5)
    assert time.monotonic() - started < 5


def test_old_interpreter_is_reported(start_worker: StartWorker) -> None:
    python = find_python("3.7")
    if python is None:
        pytest.skip("no Python 3.7 to show a failing start")
    with pytest.raises(WorkerStartError):
        start_worker(python)
