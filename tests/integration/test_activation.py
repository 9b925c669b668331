"""Activation scripts run against the real environment: appended values and the locale survive."""

from __future__ import annotations

from pathlib import Path

import cema
from tests.channel_builder import Package, PackageFile, build_channel

SCRIPT = b"""\
export CFLAGS="-I$CONDA_PREFIX/include $CFLAGS"
export CEMA_ACT_SEEN_HOME="$HOME"
echo "activation chatter that must not break anything"
unset CEMA_ACT_DROP_ME
"""


def test_activate_d_scripts_see_and_keep_the_callers_environment(
    tmp_path: Path, make_project, run_cema, store: cema.Store
) -> None:
    channel = build_channel(
        tmp_path / "channel",
        [
            Package(
                name="actpkg",
                version="1.0",
                noarch="generic",
                files=(PackageFile(path="etc/conda/activate.d/actpkg.sh", content=SCRIPT),),
            )
        ],
    )
    folder = make_project(
        f"""\
        version: 1
        channels: ["{channel}"]
        environments:
          act:
            conda: [actpkg]
        """
    )
    run_cema("sync", cwd=folder)
    prefix = cema.Project.load(folder, store=store).prefix("act")
    env = {
        "CFLAGS": "-O2 -march=native",
        "LC_CTYPE": "C.utf8",  # not "C.UTF-8", what PEP 538 coercion would set
        "CEMA_ACT_DROP_ME": "x",
        "HOME": str(tmp_path / "home"),
    }
    out = run_cema(
        "run",
        "act",
        "--",
        "sh",
        "-c",
        'echo "$CFLAGS|$LC_CTYPE|${CEMA_ACT_DROP_ME-unset}|$CEMA_ACT_SEEN_HOME"',
        cwd=folder,
        env=env,
    ).stdout.strip()
    assert out == f"-I{prefix}/include -O2 -march=native|C.utf8|unset|{tmp_path / 'home'}"
