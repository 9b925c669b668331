"""Many host threads on one worker: every reply reaches the call that asked for it."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cema.runtime import Worker
from tests.integration.conftest_runtime import worker_env

pytestmark = pytest.mark.hostile

PLUGIN = Path(__file__).resolve().parent / "hostile_plugin.py"
#: the env's python is the host's own: no venv to build
PYTHON = Path(sys.executable)
THREADS = 8
CALLS = 500
#: the whole run (4,000 round trips) must finish well within this on 2 cores
BUDGET_S = 60.0


@pytest.fixture
def worker() -> Iterator[Worker]:
    started = Worker.start(python=PYTHON, env=worker_env(PYTHON), name="threads")
    yield started
    started.close()


def test_eight_threads_of_500_calls_get_their_own_results(worker: Worker) -> None:
    assert worker.call(PLUGIN, "echo", ("warm",)) == "warm"  # the plugin is imported once
    start = threading.Barrier(THREADS)
    deadline = time.monotonic() + BUDGET_S
    misrouted: list[tuple[int, int, object]] = []
    errors: list[BaseException] = []
    done = [0] * THREADS

    def run(thread: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(CALLS):
                if time.monotonic() > deadline:
                    return
                # a payload unique to this call, of a size that varies (small and framed)
                sent = (thread, i, "x" * (i % 97))
                got = worker.call(PLUGIN, "echo", (sent,))
                if got != sent:
                    misrouted.append((thread, i, got))
                done[thread] += 1
        except BaseException as exc:  # reported below, with the thread's number
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,), name=f"caller-{n}") for n in range(THREADS)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()) + 10)
    took = time.monotonic() - began
    assert not any(t.is_alive() for t in threads), f"callers still waiting after {took:.0f} s"
    assert errors == [], errors[:3]
    assert misrouted == [], misrouted[:5]
    assert done == [CALLS] * THREADS, f"calls done per thread within {BUDGET_S:.0f} s: {done}"
    assert worker.alive()
    assert worker.call(PLUGIN, "echo", ("after",)) == "after"
