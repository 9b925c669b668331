"""`cema gc --all-staging` beside a running build: it removes only staging nobody builds in."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cema

pytestmark = pytest.mark.hostile

#: a builder stand-in: a real process holding the prefix lock while its staging folder exists
HOLDER = textwrap.dedent(
    """\
    import sys
    from cema.store import Store

    store = Store(sys.argv[1])
    with store.prefix_lock(sys.argv[2]):
        staging = store.new_staging(sys.argv[2])
        staging.mkdir()
        print(staging, flush=True)
        sys.stdin.readline()  # build until the test says stop
    """
)


def test_gc_all_staging_spares_a_build_in_progress(tmp_path: Path, run_cema) -> None:
    store = cema.Store(tmp_path / "store")
    (tmp_path / "cema.yaml").write_text("version: 1\nenvironments: {}\n")
    busy, dead = "a" * 24, "b" * 24
    leftover = store.new_staging(dead)  # a killed sync's: nobody holds its lock
    leftover.mkdir()
    (leftover / "half-written").write_text("x")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.root), busy],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        in_use = Path(holder.stdout.readline().strip())
        assert in_use.is_dir()
        run_cema("gc", "--all-staging", cwd=tmp_path)
        assert in_use.is_dir(), "gc removed the staging folder of a running build"
        assert not leftover.exists(), "gc kept a dead build's staging folder"
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
    finally:
        holder.kill()
        holder.wait()
    run_cema("gc", "--all-staging", cwd=tmp_path)
    assert not in_use.exists()
