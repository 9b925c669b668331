"""The micromamba engine against the embedded (rattler) engine: ratios in one run, A/B alternating.

Usage: python bench/bench_micromamba.py [--shared PATH] [--micromamba PATH] [--repeat N]

Needs the real conda-forge archives of ../shared/testdata/conda-forge (copied and indexed into a
temporary folder) and a real micromamba 2 (``--micromamba``, ``$CEMA_MICROMAMBA``, or
``../shared/tools/micromamba/bin/micromamba``); skips, saying why, without them. micromamba runs
behind a wrapper that gives it a HOME of its own (it appends every prefix it creates to
``~/.conda/environments.txt``). Each engine has its own store, its package cache warmed by one
build first. Rows (min/median/max of each side, ratio of the medians; expect rattler faster):
  create of one env from a warm cache      micromamba engine / rattler engine
  sync of 20 envs from a warm cache         micromamba engine / rattler engine
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import ROOT, Stats, paired, twenty_specs, write_project


def find_binary(given: Path | None, shared: Path) -> tuple[Path | None, str]:
    """A micromamba 2 that runs here, else ``(None, why not)``."""
    candidates = [given] if given else []
    if os.environ.get("CEMA_MICROMAMBA"):
        candidates.append(Path(os.environ["CEMA_MICROMAMBA"]))
    candidates.append(shared / "tools" / "micromamba" / "bin" / "micromamba")
    for binary in candidates:
        try:
            out = subprocess.run(
                [str(binary), "--version"], capture_output=True, text=True, check=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.stdout.strip().split(".", 1)[0].isdigit() and int(out.stdout.split(".")[0]) >= 2:
            return binary, ""
    return None, "no runnable micromamba 2 (tried " + ", ".join(map(str, candidates)) + ")"


def behind_home(folder: Path, binary: Path) -> Path:
    """``folder/micromamba``: ``binary`` with ``HOME=folder/home``."""
    (folder / "home").mkdir(parents=True)
    exe = folder / "micromamba"
    home = shlex.quote(str(folder / "home"))
    exe.write_text(f'#!/bin/sh\nHOME={home} exec {shlex.quote(str(binary))} "$@"\n')
    exe.chmod(0o755)
    return exe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--micromamba", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    source = args.shared / "testdata" / "conda-forge" / "channel"
    if not source.is_dir():
        print(f"skipped: {source} is absent (the bench needs the real conda-forge archives)")
        return 0
    found, why_not = find_binary(args.micromamba, args.shared)
    if found is None:
        print(f"skipped: {why_not}")
        return 0

    from rattler.index import index_fs

    from cema.engines.builder import Builder, NullReporter
    from cema.engines.micromamba import MicromambaEngine
    from cema.engines.rattler import RattlerEngine
    from cema.model.spec import load_project
    from cema.project import Project
    from cema.store import Store
    from cema.sync import build_prefix, resolve_targets

    work = Path(tempfile.mkdtemp(prefix="cema-bench-mm-"))
    try:
        channel = work / "channel"
        shutil.copytree(source, channel)
        asyncio.run(index_fs(channel, write_zst=False, write_shards=False))
        project_dir = write_project(work / "project", channel, twenty_specs())
        Project(load_project(project_dir), store=Store(work / "lockstore")).lock()
        binary = behind_home(work / "mm", found)
        sides: dict[str, tuple[Store, Builder]] = {}
        for name, builder in (
            ("rattler", RattlerEngine()),
            ("micromamba", MicromambaEngine(binary=binary, download=False)),
        ):
            sides[name] = (Store(work / f"store-{name}"), builder)

        def project(name: str) -> Project:
            store, builder = sides[name]
            return Project(load_project(project_dir), store=store, engine=builder)

        lock = project("rattler").read_lock()
        targets = resolve_targets(lock, sorted(lock.envs), platform="linux-64")

        def clear(store: Store) -> None:
            shutil.rmtree(store.envs_dir, ignore_errors=True)

        def sync_all(name: str) -> None:
            clear(sides[name][0])
            project(name).sync(mode="frozen")

        for name in sides:  # warm each engine's own package cache (and its code paths)
            sync_all(name)

        def create(name: str) -> None:
            store, builder = sides[name]
            shutil.rmtree(store.prefix(targets[0].address), ignore_errors=True)
            build_prefix(store, targets[0], builder=builder, reporter=NullReporter())

        t_create = paired(lambda: create("micromamba"), lambda: create("rattler"), args.repeat)
        t_sync = paired(lambda: sync_all("micromamba"), lambda: sync_all("rattler"), args.repeat)
        version = subprocess.run([found, "--version"], check=True, capture_output=True, text=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def ms(stats: Stats) -> str:
        return "/".join(f"{x * 1000:.0f}" for x in stats)

    packages = len(targets[0].content.conda)
    print(f"micromamba {version.stdout.strip()} ({found}); {args.repeat} runs per side")
    print(f"{'measure':36} {'micromamba min/med/max ms':>26} {'rattler min/med/max ms':>23} ratio")
    for label, (mm, ra) in (
        (f"create, warm cache ({packages} packages)", t_create),
        (f"sync of {len(targets)} envs, warm cache", t_sync),
    ):
        print(f"{label:36} {ms(mm):>26} {ms(ra):>23} {mm[1] / ra[1]:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
