"""Cema on Dask: a task calling through ``in_env`` against the same function called plainly.

    /work/venv/bin/python bench/bench_dask.py [--quick] [--arrays]

Starts a LocalCluster (two worker processes, one thread each), syncs a conda env from a local
channel built on the spot (no network), and times, in one run:

- per task: ``client.submit(f, x).result()`` one after the other (median), in_env vs plain;
- a 1,000-task ``client.map`` gathered (best of a few), in_env vs plain;
- per call inside one task (a loop on the worker), to show the env call's own cost;
- with ``--arrays`` (needs PyPI): an 8 MiB numpy array there and back inside a task.

Ratios are in_env / plain: the price of running the function in the env's interpreter.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cema
from cema.dask import CemaPlugin, in_env
from tests.channel_builder import build_local_channel

PLUGIN = '''\
"""Benchmark functions, run in the env (in_env) or on the Dask worker itself (plain)."""


def inc(x):
    return x + 1


def scale(array, factor):
    return array * factor
'''


class Plain:
    """The same function imported from the same file on the Dask worker, called directly."""

    def __init__(self, path: str, function: str) -> None:
        self.path = path
        self.function = function
        self.__name__ = function

    def __call__(self, *args: Any) -> Any:
        module = sys.modules.get("bench_dask_plain")
        if module is None:
            spec = importlib.util.spec_from_file_location("bench_dask_plain", self.path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules["bench_dask_plain"] = module
        return getattr(module, self.function)(*args)


def loop_on_worker(fn: Callable[[int], int], n: int) -> float:
    """Seconds per call of ``fn`` in a loop on the Dask worker."""
    fn(0)
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n


def arrays_on_worker(fn: Callable[..., Any], n_floats: int, repeat: int) -> float:
    """Median seconds for one array round trip through ``fn`` on the Dask worker."""
    import numpy as np

    array = np.ones(n_floats)
    fn(array, 2.0)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(array, 2.0)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_task(client: Any, fn: Callable[[int], int], n: int) -> float:
    client.submit(fn, -1, pure=False).result()
    times = []
    for i in range(n):
        start = time.perf_counter()
        assert client.submit(fn, i, pure=False).result() == i + 1
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mapped(client: Any, fn: Callable[[int], int], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        futures = client.map(fn, range(n), pure=False)
        out = client.gather(futures)
        best = min(best, time.perf_counter() - start)
        assert out == [i + 1 for i in range(n)]
        del futures
    return best


def row(label: str, env_s: float, plain_s: float, unit: str = "ms") -> None:
    scale = {"ms": 1e3, "us": 1e6}[unit]
    print(
        f"{label:<38} in_env {env_s * scale:9.2f} {unit}   plain {plain_s * scale:9.2f} {unit}"
        f"   ratio {env_s / plain_s:6.2f}x"
    )


def lock_project(folder: Path, yaml_text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cema.yaml").write_text(yaml_text, encoding="utf-8")
    project = cema.Project.load(folder, store=folder / "store")
    project.lock()
    return project.lock_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--arrays", action="store_true", help="numpy rows (a PyPI venv)")
    args = parser.parse_args()
    n_tasks, n_loop, repeat = (50, 300, 2) if args.quick else (200, 2000, 3)

    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory(prefix="cema-bench-dask-") as tmp:
        root = Path(tmp)
        channel = build_local_channel(root / "channel")
        lock = lock_project(
            root / "project",
            f'version: 1\nchannels: ["{channel}"]\n'
            "environments:\n  demo:\n    conda: [python, cemademo]\n",
        )
        plugin_file = root / "benchplug.py"
        plugin_file.write_text(PLUGIN, encoding="utf-8")
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            start = time.perf_counter()
            client.register_plugin(CemaPlugin(lock, store=root / "store"))
            print(
                f"register + sync on 2 workers (fresh store): {time.perf_counter() - start:.2f} s"
            )
            env_inc = in_env("demo", plugin_file, "inc")
            plain_inc = Plain(str(plugin_file), "inc")
            start = time.perf_counter()
            client.gather(client.map(env_inc, range(4), pure=False))
            print(f"first calls (env worker launch on each): {time.perf_counter() - start:.2f} s")
            print(f"python {sys.version.split()[0]}, {n_tasks} sequential tasks, map of 1000")
            row(
                "per task (submit + result, median)",
                *(per_task(client, f, n_tasks) for f in (env_inc, plain_inc)),
            )
            row(
                "1,000-task map (best)",
                *(mapped(client, f, 1000, repeat) for f in (env_inc, plain_inc)),
            )
            row(
                "per call inside a task (loop)",
                *(
                    client.submit(loop_on_worker, f, n_loop, pure=False).result()
                    for f in (env_inc, plain_inc)
                ),
                unit="us",
            )
            if args.arrays:
                np_lock = lock_project(
                    root / "np-project",
                    'version: 1\nenvironments:\n  np:\n    python: "3.11"\n    pip: [numpy]\n',
                )
                client.register_plugin(CemaPlugin(np_lock, store=root / "store"))
                n_floats = 1 << 20
                row(
                    "8 MiB array round trip in a task",
                    *(
                        client.submit(arrays_on_worker, f, n_floats, 20, pure=False).result()
                        for f in (
                            in_env("np", plugin_file, "scale"),
                            Plain(str(plugin_file), "scale"),
                        )
                    ),
                )


if __name__ == "__main__":
    main()
