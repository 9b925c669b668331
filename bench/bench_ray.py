"""Cema on Ray: a task in a ``cema`` runtime_env against Ray's own ``pip`` one and a plain task.

    .venv/bin/python bench/bench_ray.py [--shared PATH] [--repeat N] [--quick] [--tasks N]

Needs ``cema[ray]``, the real conda-forge archives of ../shared/testdata/conda-forge and PyPI
(for Ray's ``pip`` side). The same task (``import idna``, return its version) runs on a
local Ray cluster (``ray.init(num_cpus=2)``) four ways:

- ``cema``: ``runtime_env=cema.ray.runtime_env(lock, "bench")``, an env of python (the host's
  interpreter, packaged into the channel) and conda-forge's ``idna 3.6`` from a local channel
  (its archives are in ../shared), synced by the node's plugin from the lock;
- ``pip``: ``runtime_env={"pip": ["idna==3.6"]}``, Ray's own: a virtualenv per node and a
  ``pip install`` from PyPI (Ray installs with ``--no-cache-dir``);
- ``in_env``: a plain task calling the same function in the env through Cema's runtime
  (``cema.ray.in_env``; the Ray worker stays in the host env);
- ``plain``: no runtime_env: the host's own idna (another version; Ray vendors colorama, so
  colorama, the obvious tiny package, would not tell the envs apart).

Each side runs in its own fresh Ray (its own temp dir, so an empty runtime_env cache, and an
empty ``CEMA_HOME`` on the node) once per repetition, the sides alternating side by side. In
each session: the first task on the cold node (submit to result), then ``--tasks`` - 1 more
one after the other, of which the last (the 100th by default) is kept, and the median of
tasks 2 to N. Printed: min/median/max of each side and the ratios of the medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IDNA = "3.6"  # conda-forge's, in ../shared; the host venv has another (requests needs it)
TASK_MODULE = '''\
"""The bench's task body, run in the env through in_env."""


def probe(i):
    import idna

    return i, idna.__version__
'''


def probe(i: int) -> tuple[int, str]:
    """The task: import idna where it runs (the env's, pip's, or the host's own)."""
    import idna

    return i, str(idna.__version__)


Stats = tuple[float, float, float]  # min, median, max in seconds


@dataclass
class Side:
    """One way of running the task: its samples, one per repetition."""

    name: str
    submit: Callable[[int], Any]  # i -> an ObjectRef of (i, version)
    expect: str
    first: list[float] = field(default_factory=list)
    last: list[float] = field(default_factory=list)
    steady: list[float] = field(default_factory=list)


def stats(xs: list[float]) -> Stats:
    return min(xs), statistics.median(xs), max(xs)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or cpu
    import ray

    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}, Ray {ray.__version__}"
    )


def build_channel(source: Path, work: Path) -> Path:
    """The conda-forge archives plus a ``python`` package of the host interpreter, indexed."""
    from tests.channel_builder import index_channel, python_package, write_package

    channel = work / "channel"
    shutil.copytree(source, channel)
    write_package(python_package(), channel)  # Ray's python: the plugin lends the env its ray
    return index_channel(channel)


def lock_env(channel: Path, work: Path) -> Path:
    import cema

    folder = work / "project"
    folder.mkdir()
    (folder / "cema.yaml").write_text(
        f'version: 1\nchannels: ["{channel}"]\nenvironments:\n'
        f'  bench:\n    conda: [python, "idna={IDNA}"]\n',
        encoding="utf-8",
    )
    project = cema.Project.load(folder, store=work / "lock-store")
    project.lock()
    return project.lock_path


def session(side: Side, tasks: int, keep: bool) -> None:
    """A fresh Ray with an empty node store: the first task, then ``tasks - 1`` more."""
    import ray

    # short: Ray's socket paths under it must stay within 107 bytes
    folder = Path(tempfile.mkdtemp(prefix="cbr-"))
    os.environ["CEMA_HOME"] = str(folder / "home")  # the node's (raylet, agent, workers)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=str(folder),
        logging_level="ERROR",
        log_to_driver=False,
    )
    try:
        times = []
        for i in range(tasks):
            start = time.perf_counter()
            got = ray.get(side.submit(i), timeout=600)
            times.append(time.perf_counter() - start)
            assert got == (i, side.expect), (side.name, got)
    finally:
        ray.shutdown()
        if keep:
            print(f"kept {side.name}'s session: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    side.first.append(times[0])
    side.last.append(times[-1])
    side.steady.append(statistics.median(times[1:]))


def row(label: str, ours: Stats, base: Stats, unit: str) -> None:
    scale = 1e3 if unit == "ms" else 1.0

    def spread(s: Stats) -> str:
        return "/".join(f"{x * scale:.{1 if unit == 'ms' else 2}f}" for x in s)

    print(
        f"{label:<34} {spread(ours)} {unit} vs {spread(base)} {unit} (min/median/max)"
        f"  ratio of medians {ours[1] / base[1]:6.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--repeat", type=int, default=3, help="fresh Ray sessions per side")
    parser.add_argument("--quick", action="store_true", help="one session per side")
    parser.add_argument("--tasks", type=int, default=100, help="tasks per session (the last)")
    parser.add_argument("--keep", action="store_true", help="keep the folders (Ray's logs)")
    args = parser.parse_args()
    if args.tasks < 2:
        parser.error("--tasks: at least 2 (the first task, and the ones after it)")
    repeat = 1 if args.quick else args.repeat
    source = args.shared / "testdata" / "conda-forge" / "channel"
    if not source.is_dir():
        print(f"skipped: {source} is absent (the bench needs the real conda-forge archives)")
        return 0
    try:
        import ray
    except ImportError:
        print("skipped: ray is not installed (pip install 'cema[ray]')")
        return 0
    from cema.ray import PLUGINS_ENV_VAR, in_env, plugin_config, runtime_env

    work = Path(tempfile.mkdtemp(prefix="cema-bench-ray-"))
    saved = {k: os.environ.get(k) for k in (PLUGINS_ENV_VAR, "CEMA_HOME")}
    try:
        os.environ[PLUGINS_ENV_VAR] = plugin_config()  # the clusters ray.init starts load it
        os.environ["CEMA_HOME"] = str(work / "driver-home")
        lock = lock_env(build_channel(source, work), work)
        module = work / "bench_ray_task.py"
        module.write_text(TASK_MODULE, encoding="utf-8")
        task = ray.remote(probe)
        in_cema = task.options(runtime_env=runtime_env(lock, "bench"))
        in_pip = task.options(runtime_env={"pip": [f"idna=={IDNA}"]})
        through = in_env("bench", module, "probe", lock=lock)
        sides = [
            Side("cema", in_cema.remote, IDNA),
            Side("pip", in_pip.remote, IDNA),
            Side("in_env", through.remote, IDNA),
            Side("plain", task.remote, metadata.version("idna")),
        ]
        print(machine())
        print(f"{repeat} fresh Ray session(s) per side, {args.tasks} tasks each, sequential")
        for _ in range(repeat):
            for side in sides:  # side by side: every side sees the same machine noise
                session(side, args.tasks, args.keep)
        by = {s.name: s for s in sides}
        n = args.tasks
        for what, unit, pick in (
            ("first task, cold node", "s", lambda s: s.first),
            (f"task {n}", "ms", lambda s: s.last),
            (f"tasks 2-{n}, median", "ms", lambda s: s.steady),
        ):
            print(f"-- {what}")
            for a, b in (
                ("cema", "pip"),
                ("cema", "plain"),
                ("pip", "plain"),
                ("in_env", "cema"),
                ("in_env", "plain"),
            ):
                row(f"{a} vs {b}", stats(pick(by[a])), stats(pick(by[b])), unit)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
