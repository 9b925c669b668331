"""The segment pool: back to the start after exit, idle release, small /dev/shm, killed hosts."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cema._internal import protocol
from tests.integration.conftest_runtime import BASIC, EVENTUALLY_S, StartWorker, shm_segments

pytest_plugins = ["tests.integration.runtime_fixtures"]

pytestmark = pytest.mark.skipif(not protocol.POOLED, reason="needs /dev/shm (Linux)")

BIG_BYTES = 8 * protocol.SHM_THRESHOLD_BYTES
ROOT = Path(__file__).resolve().parents[2]

#: a host that moves buffers both ways, keeps one, then waits (or exits without closing)
HOST = textwrap.dedent(
    """
    import os, pickle, sys
    from pathlib import Path
    from cema.runtime import Worker
    worker = Worker.start(python=Path(sys.argv[1]), env=dict(os.environ), name="host")
    data = bytearray(b"abcd") * ({big} // 4)
    worker.call({basic!r}, "buffer_info", (pickle.PickleBuffer(data),))
    kept = worker.call({basic!r}, "make_buffer", ({big}, 7))
    print(worker.pid, worker.address, flush=True)
    if sys.argv[2] == "wait":
        sys.stdin.read()
    """
).format(big=BIG_BYTES, basic=str(BASIC))


def eventually(check: Callable[[], bool]) -> bool:
    """Poll ``check`` until it holds or EVENTUALLY_S passes."""
    deadline = time.monotonic() + EVENTUALLY_S
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def run_host(python: Path, mode: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", HOST, str(python), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_dev_shm_is_back_to_its_start_after_close_and_after_exit(
    venv_python: Callable[[str], Path], start_worker: StartWorker
) -> None:
    before = shm_segments()
    worker = start_worker(venv_python("3.12"), name="pool-close")
    data = bytearray(b"abcd") * (BIG_BYTES // 4)
    worker.call(BASIC, "buffer_info", (pickle.PickleBuffer(data),))
    kept = worker.call(BASIC, "make_buffer", (BIG_BYTES, 7))
    worker.close()
    assert shm_segments() - before == set()
    assert bytes(memoryview(kept)[-1:]) == b"\x07"  # our mapping outlives the name
    host = run_host(venv_python("3.12"), "exit")  # exits without closing its worker
    host.communicate(timeout=60)
    assert host.returncode == 0
    assert shm_segments() - before == set()


def test_idle_segments_are_released(
    venv_python: Callable[[str], Path],
    start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = {protocol.segments.IDLE_HOOK: "0.2"}
    monkeypatch.setenv(protocol.segments.IDLE_HOOK, "0.2")
    before = shm_segments()
    worker = start_worker(venv_python("3.12"), name="pool-idle", extra_env=hook)
    data = bytearray(b"abcd") * (BIG_BYTES // 4)
    worker.call(BASIC, "buffer_info", (pickle.PickleBuffer(data),))
    back = worker.call(BASIC, "make_buffer", (BIG_BYTES, 7))
    del back
    assert shm_segments() - before  # kept for reuse for now
    assert eventually(lambda: not shm_segments() - before), shm_segments() - before
    assert worker.call(BASIC, "echo", (1,)) == 1  # still serving


def test_a_too_small_dev_shm_falls_back_to_files_with_one_warning(
    venv_python: Callable[[str], Path],
    start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    budget = str(protocol.SHM_THRESHOLD_BYTES)  # a test hook: /dev/shm holds 1 MiB for us
    monkeypatch.setenv(protocol.segments.BUDGET_HOOK, budget)
    before = shm_segments()
    worker = start_worker(
        venv_python("3.12"), name="pool-small", extra_env={protocol.segments.BUDGET_HOOK: budget}
    )
    data = bytearray(b"wxyz") * (BIG_BYTES // 4)
    for _ in range(3):
        assert worker.call(BASIC, "buffer_info", (pickle.PickleBuffer(data),)) == (
            len(data),
            b"wxyz",
        )
        back = worker.call(BASIC, "make_buffer", (BIG_BYTES, 7))
        assert bytes(memoryview(back)[-2:]) == b"\x07\x07"
        del back
    assert shm_segments() - before == set()
    warnings = [r.getMessage() for r in caplog.records if "using files in" in r.getMessage()]
    assert len(warnings) == 2, warnings  # one line from each side
    assert any("cema worker: shared memory" in w for w in warnings)


def test_a_killed_host_leaves_nothing_the_next_launch_keeps(
    venv_python: Callable[[str], Path], start_worker: StartWorker
) -> None:
    before = shm_segments()
    host = run_host(venv_python("3.12"), "wait")
    assert host.stdout is not None
    worker_pid, address = host.stdout.readline().split()
    folder = Path(address).parent
    os.kill(host.pid, signal.SIGKILL)
    host.wait()
    assert eventually(lambda: not protocol.alive(int(worker_pid)))  # parent-death signal
    assert folder.exists()  # what the killed host left ...
    start_worker(venv_python("3.12"), name="pool-next")  # ... the next launch removes
    assert not folder.exists()
    assert not [
        n for n in shm_segments() - before if n.split("_")[1] in (str(host.pid), worker_pid)
    ]
