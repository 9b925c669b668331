"""Core pipeline speed, as ratios against a baseline measured in the same run, A and B alternating.

Usage: python bench/bench_core.py [--shared PATH] [--repeat N]

Needs the real conda-forge archives of ../shared/testdata/conda-forge (copied and indexed into a
temporary folder). Each row runs its two sides alternately ``--repeat`` times and prints
min/median/max of each and the ratio of the medians. Targets:
  `cema --version`                      <= 1.5x `python -c pass`
  no-op `cema sync` of 20 locked envs   <= 2.5x `python -c pass`
  no-op `cema sync` of 500 locked envs  <= 1.5x the 20-env no-op
  the same no-op without its stamp (the first after an edit of cema.yaml)  <= 3x `python -c pass`
  create from a warm package cache      <= 1.2x raw `rattler.install` of the same records
  lock of 20 envs                       <= 1.2x raw `rattler.solve` of the same specs
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["xz", "bzip2", "libzlib", "libffi", "ncurses", "libuuid", "tk", "libsqlite"]
OPENSSL = ["openssl=3.2.1", "openssl=3.3.1"]


Stats = tuple[float, float, float]  # min, median, max in seconds


def paired(a: Callable[[], object], b: Callable[[], object], repeat: int) -> tuple[Stats, Stats]:
    """Time ``a`` and ``b`` alternately (a, b, a, b...): both see the same machine noise."""
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, out in ((a, samples[0]), (b, samples[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    a_s, b_s = samples
    return (
        (min(a_s), statistics.median(a_s), max(a_s)),
        (min(b_s), statistics.median(b_s), max(b_s)),
    )


def twenty_specs() -> list[list[str]]:
    combos = [[*pair, ssl] for pair in itertools.combinations(PACKAGES, 2) for ssl in OPENSSL]
    return [list(c) for c in combos[:20]]


def many_specs(count: int) -> list[list[str]]:
    """``count`` different envs: every subset of the packages, with each openssl."""
    sizes = range(1, len(PACKAGES) + 1)
    combos = [
        [*subset, ssl]
        for n in sizes
        for subset in itertools.combinations(PACKAGES, n)
        for ssl in OPENSSL
    ]
    return combos[:count]


def write_project(folder: Path, channel: Path, specs: list[list[str]]) -> Path:
    folder.mkdir()
    lines = ["version: 1", f"channels: [{channel}]", "platforms: [linux-64]", "environments:"]
    lines += [f"  env{i:03d}: {{conda: [{', '.join(s)}]}}" for i, s in enumerate(specs)]
    (folder / "cema.yaml").write_text("\n".join(lines) + "\n")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    source = args.shared / "testdata" / "conda-forge" / "channel"
    if not source.is_dir():
        print(f"skipped: {source} is absent (the bench needs the real conda-forge archives)")
        return 0

    import rattler
    from rattler.index import index_fs

    from cema.engines.builder import NullReporter
    from cema.engines.rattler import RattlerEngine, virtual_packages
    from cema.model.spec import load_project
    from cema.project import Project
    from cema.store import Store
    from cema.sync import build_prefix, resolve_targets

    work = Path(tempfile.mkdtemp(prefix="cema-bench-"))
    try:
        channel = work / "channel"
        shutil.copytree(source, channel)
        asyncio.run(index_fs(channel, write_zst=False, write_shards=False))
        specs = twenty_specs()
        project_dir = write_project(work / "project", channel, specs)
        big_dir = write_project(work / "big", channel, many_specs(500))
        store = Store(work / "store")
        # byte-compiled modules, as an installed Cema has them
        env = {**os.environ, "CEMA_HOME": str(store.root)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)

        # 1. lock of 20 envs vs raw rattler.solve of the same specs
        def cema_lock() -> None:
            (project_dir / "cema.lock").unlink(missing_ok=True)
            Project(load_project(project_dir), store=store).lock()

        host = str(rattler.Subdir.current())

        def raw_solve() -> None:
            gateway = rattler.Gateway()  # the best raw use: one gateway for all the solves
            for spec in specs:
                asyncio.run(
                    rattler.solve(
                        sources=[rattler.Channel(str(channel))],
                        gateway=gateway,
                        specs=[rattler.MatchSpec(s) for s in spec],
                        platforms=[rattler.Subdir("linux-64"), rattler.Subdir("noarch")],
                        virtual_packages=virtual_packages("linux-64", host),
                    )
                )

        raw_solve()  # warm both the same way
        t_lock, t_solve = paired(cema_lock, raw_solve, args.repeat)

        # 2. create from a warm package cache vs raw rattler.install of the same records
        project = Project(load_project(project_dir), store=store)
        lock = project.read_lock()
        (item,) = resolve_targets(lock, ["env000"], platform="linux-64")
        engine = RattlerEngine()
        from cema.engines.rattler import _from_record

        records = [_from_record(r) for r in item.content.conda]
        asyncio.run(
            rattler.install(
                records,
                target_prefix=work / "warm",
                cache_dir=store.package_cache,
                show_progress=False,
            )
        )

        def raw_install() -> None:
            target = work / "raw"
            shutil.rmtree(target, ignore_errors=True)
            asyncio.run(
                rattler.install(
                    records,
                    target_prefix=target,
                    cache_dir=store.package_cache,
                    show_progress=False,
                )
            )

        def cema_create() -> None:
            shutil.rmtree(store.prefix(item.address), ignore_errors=True)
            build_prefix(store, item, builder=engine, reporter=NullReporter())

        t_create, t_raw_install = paired(cema_create, raw_install, args.repeat)

        # 3. whole processes, as a user runs them, against the interpreter's own start-up
        cema = [sys.executable, "-m", "cema"]

        def python_pass() -> None:
            subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)

        subprocess.run([*cema, "--project", str(project_dir), "sync", "-q"], env=env, check=True)

        def version() -> None:
            subprocess.run([*cema, "--version"], env=env, check=True, capture_output=True)

        def noop_sync() -> None:
            subprocess.run(
                [*cema, "--project", str(project_dir), "sync", "--locked", "-q"],
                env=env,
                check=True,
                capture_output=True,
            )

        def noop_big() -> None:
            subprocess.run(
                [*cema, "--project", str(big_dir), "sync", "--locked", "-q"],
                env=env,
                check=True,
                capture_output=True,
            )

        def noop_unstamped() -> None:
            # the first no-op after an edit of cema.yaml: no stamp, so the long way decides
            shutil.rmtree(store.root / "cache" / "noop", ignore_errors=True)
            noop_sync()

        subprocess.run([*cema, "--project", str(big_dir), "sync", "-q"], env=env, check=True)
        noop_sync(), noop_big()  # warm: byte-compiled modules, quick copies of the lock
        t_version, t_pass = paired(version, python_pass, args.repeat * 4)
        t_noop, t_pass2 = paired(noop_sync, python_pass, args.repeat * 4)
        t_big, t_noop2 = paired(noop_big, noop_sync, args.repeat * 4)
        t_long, t_pass3 = paired(noop_unstamped, python_pass, args.repeat * 4)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = [
        ("cema --version / python -c pass", t_version, t_pass, 1.5),
        ("no-op sync, 20 envs / python -c pass", t_noop, t_pass2, 2.5),
        ("no-op sync, 500 envs / 20 envs", t_big, t_noop2, 1.5),
        ("no-op sync, 20 envs, no stamp / python -c pass", t_long, t_pass3, 3.0),
        ("create, warm cache / raw rattler.install", t_create, t_raw_install, 1.2),
        ("lock, 20 envs / raw rattler.solve", t_lock, t_solve, 1.2),
    ]

    def ms(stats: Stats) -> str:
        return "/".join(f"{x * 1000:.1f}" for x in stats)

    print(f"{'measure':42} {'cema min/med/max ms':>22} {'baseline min/med/max ms':>24} ratio")
    for name, ours, base, target in rows:
        ratio = ours[1] / base[1]
        flag = "ok" if ratio <= target else "MISS"
        print(f"{name:42} {ms(ours):>22} {ms(base):>24} {ratio:5.2f} <={target} {flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
