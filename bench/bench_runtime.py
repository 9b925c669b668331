"""Worker runtime benchmark: launch, tiny calls, large arrays and peers, printed as ratios.

Run under a venv that has numpy (and, for the peer rows, rpyc, execnet and appose):

    /work/benchvenv/bin/python bench/bench_runtime.py [--python PY] [--quick]

The worker runs under ``--python`` (default: this interpreter), which needs numpy for the
array rows. Every row alternates A and B pair by pair and prints min/median/max of each side
and the ratio of the medians. Targets (issues 3, 17): launch-to-first-call <= 1.5x the floor;
a tiny call <= 1.1x a raw ``multiprocessing.connection`` echo and faster than every peer; the
first transfer of a size <= 1.5x a copy into fresh pages.
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


def ab(
    a: Callable[[], float], b: Callable[[], float], pairs: int
) -> tuple[list[float], list[float]]:
    """``pairs`` timings of each, A then B pair by pair: a noisy machine favours neither."""
    got_a: list[float] = []
    got_b: list[float] = []
    for _ in range(pairs):
        got_a.append(a())
        got_b.append(b())
    return got_a, got_b


def row(label: str, ours: list[float], base: list[float], unit: str, target: str) -> None:
    """min/median/max of each side and the ratio of the medians."""
    scale = 1e3 if unit == "ms" else 1e6

    def spread(xs: list[float]) -> str:
        return "/".join(f"{x * scale:.1f}" for x in (min(xs), statistics.median(xs), max(xs)))

    ratio = statistics.median(ours) / statistics.median(base)
    print(
        f"{label:<44} {spread(ours)} {unit} vs {spread(base)} {unit} (min/median/max)"
        f"  ratio of medians {ratio:5.2f}  ({target})"
    )


def batch(fn: Callable[[int], Any], calls: int) -> Callable[[], float]:
    """One timing: seconds per call over ``calls`` calls."""

    def run() -> float:
        t0 = time.perf_counter()
        for i in range(calls):
            fn(i)
        return (time.perf_counter() - t0) / calls

    return run


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


#: a peer: its call, and how to close it; or why it is skipped
Peer = tuple[Callable[[int], Any], Callable[[], None]] | str


def peer_rpyc(python: Path) -> Peer:
    try:
        import rpyc  # type: ignore[import-not-found]
    except ImportError:
        return "rpyc is not importable here"
    server = Path(sys.executable).parent / "rpyc_classic.py"
    if not server.exists():
        return f"{server} is missing"
    # rpyc starts its classic server over stdio under the host interpreter (the bench venv)
    conn = rpyc.classic.connect_subproc(str(server))
    conn.execute("def echo(x):\n    return x")
    return conn.namespace["echo"], conn.close


def peer_execnet(python: Path) -> Peer:
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

    def close() -> None:
        channel.send(None)
        gateway.exit()

    return call, close


def peer_appose(python: Path) -> Peer:
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

    return call, service.close


# --- arrays ---------------------------------------------------------------------------------------


def arrays(worker: Worker, plugin: Path, sizes_mb: list[int], pairs: int) -> None:
    """One way (array in, a number out) and round trip (echo), against numpy copies.

    Baselines: ``np.copyto`` into an existing buffer (warm pages: what a reused segment costs),
    and, for the first transfer of a size (a new segment), a copy into freshly mapped pages,
    which the kernel must allocate and zero on first touch.
    """
    import mmap

    import numpy as np

    worker.call(plugin, "nbytes", (np.ones(1),))  # numpy's import in the worker is not a transfer
    for mb in sizes_mb:
        a = np.ones(mb * 1_000_000 // 8)
        target = np.empty_like(a)

        def fresh(a: Any = a) -> float:
            t0 = time.perf_counter()
            buf = mmap.mmap(-1, a.nbytes)
            b = np.frombuffer(buf, dtype=a.dtype)
            np.copyto(b, a)
            elapsed = time.perf_counter() - t0
            del b
            buf.close()
            return elapsed

        def copyto(a: Any = a, target: Any = target) -> float:
            t0 = time.perf_counter()
            np.copyto(target, a)
            return time.perf_counter() - t0

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

        fresh_s = fresh()
        cold_s = one_way()  # the first transfer of a size makes its segment
        row(f"{mb} MB first transfer vs fresh-page copy", [cold_s], [fresh_s], "ms", "<= 1.5")
        ours, base = ab(one_way, copyto, pairs)
        row(f"{mb} MB one way vs np.copyto", ours, base, "ms", "memcpy is the floor")
        # the first two round trips make segments (a second one on the host: the worker lets
        # go of the first only after its reply); the row above is that cost, this one reuse
        round_trip(), round_trip()
        ours, base = ab(round_trip, lambda: 2 * copyto(), pairs)
        row(f"{mb} MB round trip vs 2x np.copyto", ours, base, "ms", "memcpy is the floor")
        del a, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", type=Path, default=Path(sys.executable))
    parser.add_argument("--quick", action="store_true", help="fewer calls, no 800 MB array")
    parser.add_argument("--mb", type=int, nargs="*", help="array sizes in MB (default 8 80 [800])")
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

        ours, base = ab(lambda: our_launch(python, plugin), lambda: floor_launch(python, folder), 7)
        row("launch to first call", ours, base, "ms", "target <= 1.5")

        raw_server = RawEcho(python, folder)
        with Worker.start(python=python, env=dict(os.environ), name="bench") as worker:
            proxy = worker.import_module(plugin)
            per_pair = max(calls // 40, 100)
            for fn in (proxy.echo, raw_server.call):
                batch(fn, 500)()  # warm up
            ours, base = ab(batch(proxy.echo, per_pair), batch(raw_server.call, per_pair), 40)
            raw_server.close()
            row("tiny call echo(i) vs raw mp.connection echo", ours, base, "us", "<= 1.1")
            for name, start in (
                ("rpyc", peer_rpyc),
                ("execnet", peer_execnet),
                ("appose", peer_appose),
            ):
                peer = start(python)
                if isinstance(peer, str):
                    print(f"peer {name}: skipped: {peer}")
                    continue
                call, close = peer
                n = per_pair if name != "appose" else max(per_pair // 10, 20)
                try:
                    batch(call, 50)()
                    ours, base = ab(batch(proxy.echo, n), batch(call, n), 20)
                finally:
                    close()
                row(f"tiny call: cema vs {name}", ours, base, "us", "target < 1")
            try:
                sizes = args.mb or ([8, 80] if args.quick else [8, 80, 800])
                arrays(worker, plugin, sizes, 3 if args.quick else 5)
            except ImportError as exc:
                print(f"arrays: skipped: {exc}")


if __name__ == "__main__":
    main()
