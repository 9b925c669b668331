"""Worker runtime benchmark: launch, tiny calls, large arrays and peers, printed as ratios.

Run under a venv that has numpy (and, for the peer rows, rpyc, execnet and appose):

    /work/benchvenv/bin/python bench/bench_runtime.py [--python PY] [--quick]

The worker runs under ``--python`` (default: this interpreter), which needs numpy for the
array rows. Targets (issue 3): launch-to-first-call <= 1.5x the floor; a tiny call <= 1.3x a
raw ``multiprocessing.connection`` echo and faster than every peer; arrays of 80 MB and up at
>= 0.5x memcpy speed.
"""

from __future__ import annotations

import argparse
import os
import pickle
import secrets
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from multiprocessing.connection import Listener
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cema.runtime import Worker

PLUGIN = textwrap.dedent(
    """
    def echo(x):
        return x

    def nbytes(a):
        return a.nbytes
    """
)
ECHO_SERVER = textwrap.dedent(
    """
    import sys
    from multiprocessing.connection import Client
    c = Client(sys.argv[1], family="AF_UNIX", authkey=bytes.fromhex(sys.stdin.readline()))
    while True:
        try:
            m = c.recv_bytes()
        except EOFError:
            break
        c.send_bytes(m)
    """
)
FLOOR_CLIENT = textwrap.dedent(
    """
    import sys
    from multiprocessing.connection import Client
    c = Client(sys.argv[1], family="AF_UNIX", authkey=bytes.fromhex(sys.stdin.readline()))
    c.send_bytes(b"hello")
    """
)


def best_of(n: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(n))


def per_call(fn: Callable[[int], Any], calls: int, rounds: int = 5) -> float:
    """Seconds per call: the best of ``rounds`` batches (the least disturbed one)."""
    for i in range(200):
        fn(i)

    def batch() -> float:
        t0 = time.perf_counter()
        for i in range(calls):
            fn(i)
        return (time.perf_counter() - t0) / calls

    return best_of(rounds, batch)


def row(label: str, ours: float, base: float, unit: str, target: str) -> None:
    print(
        f"{label:<44} {ours * 1e3 if unit == 'ms' else ours * 1e6:9.1f} {unit}"
        f"  vs {base * 1e3 if unit == 'ms' else base * 1e6:9.1f} {unit}"
        f"  ratio {ours / base:5.2f}  ({target})"
    )


# --- launch -------------------------------------------------------------------------------------


def floor_launch(python: Path, folder: Path) -> float:
    """Bare interpreter start plus an authenticated connect and one message."""
    address = str(folder / f"floor-{secrets.token_hex(4)}.sock")
    key = secrets.token_bytes(32)
    with Listener(address, family="AF_UNIX", authkey=key) as listener:
        t0 = time.perf_counter()
        proc = subprocess.Popen([python, "-c", FLOOR_CLIENT, address], stdin=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(key.hex().encode() + b"\n")
        proc.stdin.flush()
        with listener.accept() as conn:
            conn.recv_bytes()
            elapsed = time.perf_counter() - t0
        proc.stdin.close()
        proc.wait()
    return elapsed


def our_launch(python: Path, plugin: Path) -> float:
    t0 = time.perf_counter()
    worker = Worker.start(python=python, env=dict(os.environ), name="bench")
    worker.call(plugin, "echo", (1,))
    elapsed = time.perf_counter() - t0
    worker.close()
    return elapsed


# --- tiny calls ----------------------------------------------------------------------------------


class RawEcho:
    """A bare ``multiprocessing.connection`` echo server: the floor for a tiny call."""

    def __init__(self, python: Path, folder: Path) -> None:
        address = str(folder / "echo.sock")
        key = secrets.token_bytes(32)
        with Listener(address, family="AF_UNIX", authkey=key) as listener:
            self.proc = subprocess.Popen(
                [python, "-c", ECHO_SERVER, address], stdin=subprocess.PIPE
            )
            assert self.proc.stdin is not None
            self.proc.stdin.write(key.hex().encode() + b"\n")
            self.proc.stdin.flush()
            self.conn = listener.accept()

    def call(self, i: int) -> Any:
        self.conn.send_bytes(pickle.dumps((1, "echo", (i,)), 5))
        return pickle.loads(self.conn.recv_bytes())

    def close(self) -> None:
        self.conn.close()
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def interleaved(
    a: Callable[[int], Any], b: Callable[[int], Any], calls: int, rounds: int = 20
) -> tuple[float, float]:
    """Seconds per call of ``a`` and ``b``, best batch of each, batches alternating.

    Alternating keeps a noisy machine (shared cores, a VM) from favouring either side.
    """
    for i in range(500):
        a(i)
        b(i)
    best_a = best_b = float("inf")
    per_round = max(calls // rounds, 100)
    for _ in range(rounds):
        for fn, is_a in ((a, True), (b, False)):
            t0 = time.perf_counter()
            for i in range(per_round):
                fn(i)
            elapsed = (time.perf_counter() - t0) / per_round
            if is_a:
                best_a = min(best_a, elapsed)
            else:
                best_b = min(best_b, elapsed)
    return best_a, best_b


def peer_rpyc(python: Path, calls: int) -> float | str:
    try:
        import rpyc  # type: ignore[import-not-found]
    except ImportError:
        return "rpyc is not importable here"
    server = Path(sys.executable).parent / "rpyc_classic.py"
    if not server.exists():
        return f"{server} is missing"
    # rpyc starts its classic server over stdio under the host interpreter (the bench venv)
    conn = rpyc.classic.connect_subproc(str(server))
    try:
        conn.execute("def echo(x):\n    return x")
        echo = conn.namespace["echo"]
        return per_call(echo, calls)
    finally:
        conn.close()


def peer_execnet(python: Path, calls: int) -> float | str:
    try:
        import execnet  # type: ignore[import-not-found]
    except ImportError:
        return "execnet is not importable here"
    gateway = execnet.makegateway(f"popen//python={python}")
    channel = gateway.remote_exec(
        "while 1:\n    x = channel.receive()\n    if x is None: break\n    channel.send(x)"
    )

    def call(i: int) -> Any:
        channel.send(i)
        return channel.receive()

    try:
        return per_call(call, calls)
    finally:
        channel.send(None)
        gateway.exit()


def peer_appose(python: Path, calls: int) -> float | str:
    try:
        import appose  # type: ignore[import-not-found]
    except ImportError:
        return "appose is not importable here"
    # a plain environment over the worker venv: no building, its bin/ first on PATH
    env = (
        appose.custom()
        .base(str(Path(python).parent.parent))
        .bin_paths(str(Path(python).parent))
        .build()
    )
    service = env.python()

    def call(i: int) -> Any:
        task = service.task("task.outputs['result'] = x", inputs={"x": i})
        task.wait_for()
        return task.outputs["result"]

    try:
        return per_call(call, max(calls // 10, 50), rounds=3)
    finally:
        service.close()


# --- arrays ---------------------------------------------------------------------------------------


def arrays(worker: Worker, plugin: Path, sizes_mb: list[int]) -> None:
    """One way (array in, a number out) and round trip (echo), against numpy copies.

    Two baselines: ``memcpy`` copies into memory the allocator already has (warm pages), and
    ``fresh`` into newly mapped pages, which the kernel must allocate and zero on first touch,
    as it must for every new shared-memory segment.
    """
    import mmap

    import numpy as np

    for mb in sizes_mb:
        a = np.ones(mb * 1_000_000 // 8)

        def memcpy(a: Any = a) -> float:
            t0 = time.perf_counter()
            b = a.copy()
            elapsed = time.perf_counter() - t0
            del b
            return elapsed

        def fresh(a: Any = a) -> float:
            t0 = time.perf_counter()
            buf = mmap.mmap(-1, a.nbytes)
            b = np.frombuffer(buf, dtype=a.dtype)
            np.copyto(b, a)
            elapsed = time.perf_counter() - t0
            del b
            buf.close()
            return elapsed

        def one_way(a: Any = a) -> float:
            t0 = time.perf_counter()
            worker.call(plugin, "nbytes", (a,))
            return time.perf_counter() - t0

        def round_trip(a: Any = a) -> float:
            t0 = time.perf_counter()
            b = worker.call(plugin, "echo", (a,))
            elapsed = time.perf_counter() - t0
            assert b.shape == a.shape
            del b
            return elapsed

        rounds = 3
        cold_s = one_way()  # the first transfer of a size allocates its segment's pages
        copy_s = best_of(rounds, memcpy)
        fresh_s = best_of(rounds, fresh)
        one_s = best_of(rounds, one_way)
        trip_s = best_of(rounds, round_trip)
        print(
            f"{mb:>4} MB array: memcpy {copy_s * 1e3:6.1f} ms,"
            f" fresh pages {fresh_s * 1e3:6.1f} ms;"
            f" one way {one_s * 1e3:6.1f} ms = {copy_s / one_s:4.2f}x memcpy speed,"
            f" {fresh_s / one_s:4.2f}x fresh; round trip {trip_s * 1e3:6.1f} ms ="
            f" {2 * copy_s / trip_s:4.2f}x / {2 * fresh_s / trip_s:4.2f}x"
            f" (target >= 0.5x from 80 MB); first transfer {cold_s * 1e3:6.1f} ms"
        )
        del a


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", type=Path, default=Path(sys.executable))
    parser.add_argument("--quick", action="store_true", help="fewer calls, no 800 MB array")
    parser.add_argument(
        "--pin",
        type=int,
        metavar="CPU",
        help="run everything (workers inherit it) on one CPU: steadier ratios on "
        "a noisy machine, where cross-core wake-ups vary from run to run",
    )
    args = parser.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    calls = 10000 if args.quick else 40000
    python: Path = args.python
    with tempfile.TemporaryDirectory(prefix="cema-bench-") as tmp:
        folder = Path(tmp)
        plugin = folder / "plugin.py"
        plugin.write_text(PLUGIN)
        pinned = f", pinned to CPU {args.pin}" if args.pin is not None else ""
        print(f"host python {sys.version.split()[0]}, worker python {python}{pinned}")

        floor = statistics.median(floor_launch(python, folder) for _ in range(7))
        ours = statistics.median(our_launch(python, plugin) for _ in range(7))
        row("launch to first call (median of 7)", ours, floor, "ms", "target <= 1.5")

        raw_server = RawEcho(python, folder)
        with Worker.start(python=python, env=dict(os.environ), name="bench") as worker:
            proxy = worker.import_module(plugin)
            tiny, raw = interleaved(proxy.echo, raw_server.call, calls)
            raw_server.close()
            row("tiny call echo(i) vs raw mp.connection echo", tiny, raw, "us", "target <= 1.3")
            for name, peer in (
                ("rpyc", peer_rpyc),
                ("execnet", peer_execnet),
                ("appose", peer_appose),
            ):
                result = peer(python, calls)
                if isinstance(result, str):
                    print(f"peer {name}: skipped: {result}")
                else:
                    row(f"tiny call: cema vs {name}", tiny, result, "us", "target < 1")
            try:
                arrays(worker, plugin, [8, 80] if args.quick else [8, 80, 800])
            except ImportError as exc:
                print(f"arrays: skipped: {exc}")


if __name__ == "__main__":
    main()
