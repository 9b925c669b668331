"""Large buffers through shared memory: numpy round trips, and no segment left behind."""

from __future__ import annotations

import collections
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from cema._internal import protocol
from cema.errors import WorkerCrashedError
from tests.integration.conftest_runtime import BASIC, StartWorker, shm_segments

pytest_plugins = ["tests.integration.runtime_fixtures"]

BIG_BYTES = 8 * protocol.SHM_THRESHOLD_BYTES


@pytest.mark.parametrize("version", ["3.8", "3.12", "3.13"])
def test_plain_buffers_through_shared_memory(
    version: str, venv_python: Callable[[str], Path], start_worker: StartWorker
) -> None:
    before = shm_segments()
    worker = start_worker(venv_python(version), name=f"buffers{version}")
    data = bytearray(b"abcd") * (BIG_BYTES // 4)
    for _ in range(3):  # the second and third transfers reuse the segments
        assert worker.call(BASIC, "buffer_info", (pickle.PickleBuffer(data),)) == (
            len(data),
            b"abcd",
        )
        back = worker.call(BASIC, "make_buffer", (BIG_BYTES, 7))
        assert memoryview(back).nbytes == BIG_BYTES
        assert bytes(memoryview(back)[-3:]) == b"\x07\x07\x07"
        del back
    assert len(shm_segments() - before) <= 4
    worker.close()
    assert shm_segments() - before == set()


try:
    import numpy as np
except ImportError:  # the tests below need it in the host too
    np = None
needs_numpy = pytest.mark.skipif(np is None, reason="numpy is not installed in the host")


@needs_numpy
@pytest.mark.network
def test_array_round_trip_through_shared_memory(
    numpy_python: Path, start_worker: StartWorker
) -> None:
    before = shm_segments()
    worker = start_worker(numpy_python, name="numpy")
    array = np.arange(BIG_BYTES // 8, dtype=np.float64).reshape(-1, 1024)
    doubled = worker.call(BASIC, "array_double", (array,))
    assert doubled.dtype == array.dtype
    assert doubled.shape == array.shape
    np.testing.assert_array_equal(doubled, array * 2)
    doubled[0, 0] = -1.0  # the received array is ours to change
    assert worker.call(BASIC, "array_sum", (array,)) == float(array.sum())
    small = np.arange(10)
    np.testing.assert_array_equal(worker.call(BASIC, "echo", (small,)), small)
    worker.close()
    assert shm_segments() - before == set()
    assert doubled[0, 0] == -1.0  # our mapping outlives the names
    np.testing.assert_array_equal(doubled[1:], (array * 2)[1:])


@needs_numpy
@pytest.mark.network
def test_segments_are_reused_between_calls(numpy_python: Path, start_worker: StartWorker) -> None:
    before = shm_segments()
    worker = start_worker(numpy_python, name="numpy-reuse")
    array = np.ones(BIG_BYTES // 8)
    for _ in range(10):
        result = worker.call(BASIC, "array_double", (array,))
        assert float(result[0]) == 2.0
        del result  # let go of the worker's segment, so it can reuse it
    # a few segments per side, not one per call
    assert len(shm_segments() - before) <= 6
    worker.close()
    assert shm_segments() - before == set()


@needs_numpy
@pytest.mark.network
def test_segments_are_unlinked_when_calls_fail_and_the_worker_dies(
    numpy_python: Path, start_worker: StartWorker
) -> None:
    before = shm_segments()
    worker = start_worker(numpy_python, name="numpy-fail")
    array = np.ones(BIG_BYTES // 8)
    with pytest.raises(RuntimeError, match=f"failed on an array of {array.nbytes} bytes"):
        worker.call(BASIC, "array_fail", (array,))
    kept = worker.call(BASIC, "array_double", (array,))  # a worker segment the host maps
    with pytest.raises(WorkerCrashedError):
        worker.call(BASIC, "exit_hard", (1,))
    assert shm_segments() - before == set()  # the host removed what the dead worker made
    assert float(kept.sum()) == 2.0 * array.size
    worker.close()
    assert shm_segments() - before == set()


@needs_numpy
def test_frames_carry_segments_and_releases() -> None:
    warned: list[str] = []
    outbox, inbox = protocol.Outbox(warned.append), protocol.Inbox()
    peer_outbox, peer_inbox = protocol.Outbox(warned.append), protocol.Inbox()
    array = np.arange(BIG_BYTES // 8)
    try:
        frame, entries = protocol.encode(protocol.RESULT, 9, array, outbox=outbox, inbox=inbox)
        assert len(entries) == 1
        reply = protocol.decode(frame, inbox=peer_inbox, outbox=peer_outbox)
        assert reply[1] == 9  # (kind, request id, note, body, buffers)
        received = pickle.loads(reply[3], buffers=reply[4])
        np.testing.assert_array_equal(received, array)
        del received, reply
        name = entries[0][0]
        assert peer_inbox.released == collections.deque([name])  # let go: reported next time
        frame, _ = protocol.encode(protocol.CALL, 10, None, outbox=peer_outbox, inbox=peer_inbox)
        protocol.decode(frame, inbox=inbox, outbox=outbox)
        again, _ = protocol.encode(protocol.RESULT, 11, array, outbox=outbox, inbox=inbox)
        assert protocol.decode(again, inbox=peer_inbox, outbox=peer_outbox)[4]  # buffers
        assert shm_segments() >= {name}
        del again
    finally:
        for box in (outbox, peer_outbox):
            box.close()


def test_without_shared_memory_buffers_go_in_band(
    venv_python: Callable[[str], Path],
    start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def full(*args: object) -> tuple[str, object]:
        raise OSError(28, "No space left on device")

    # neither /dev/shm nor the spill folder has room: the host sends in band
    monkeypatch.setattr(protocol.segments, "_create_pooled", full)
    monkeypatch.setattr(protocol.segments, "_create_unpooled", full)
    worker = start_worker(venv_python("3.12"), name="no-shm")
    data = bytearray(b"wxyz") * (BIG_BYTES // 4)
    assert worker.call(BASIC, "buffer_info", (pickle.PickleBuffer(data),)) == (len(data), b"wxyz")
    assert "buffers go in band" in caplog.text
