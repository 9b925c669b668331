"""Workers in conda prefixes synced from the test channel, through ``Environment.from_spec``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cema

BASIC = Path(__file__).resolve().parents[1] / "data" / "runtime" / "basic.py"


@pytest.fixture
def demo_env(local_channel: Path, make_project, store: cema.Store) -> cema.Environment:  # type: ignore[no-untyped-def]
    folder = make_project(
        f"""\
        version: 1
        channels: ["{local_channel}"]
        environments:
          demo:
            conda: [python, "cemademo=2.0"]
            variables: {{CEMA_DEMO_GREETING: hej}}
        """
    )
    return cema.Environment.from_spec(folder, name="demo", store=store)


def test_a_worker_runs_in_the_synced_conda_prefix(demo_env: cema.Environment) -> None:
    with demo_env.launch():
        assert demo_env.launched()
        demo = demo_env.import_module("cemademo")
        assert demo.hello("tests") == "hello tests from cemademo 2.0"
        environ = demo_env.execute("os", "getenv", ("CONDA_PREFIX",))
        assert environ == str(demo_env.prefix)
        assert demo_env.execute("os", "getenv", ("CEMA_DEMO_GREETING",)) == "hej"
        prefix = demo_env.execute("sys", "__getattribute__", ("prefix",))
        assert Path(prefix) == demo_env.prefix
        # errors keep their type; the worker keeps serving
        with pytest.raises(ValueError, match="from the prefix"):
            demo_env.execute(str(BASIC), "raise_value_error", ("from the prefix",))
        assert demo_env.execute(str(BASIC), "add", (1, 2)) == 3
    assert not demo_env.launched()


def test_a_crash_in_the_prefix_is_reported_and_a_relaunch_works(
    demo_env: cema.Environment,
) -> None:
    demo_env.launch()
    try:
        with pytest.raises(cema.WorkerCrashedError) as info:
            demo_env.execute("os", "_exit", (3,))
        assert info.value.exitcode == 3
        demo_env.launch()
        assert demo_env.execute("os", "getpid") != os.getpid()
    finally:
        demo_env.exit()


def test_gc_spares_the_prefix_a_running_worker_uses(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    text = f"""\
        version: 1
        channels: ["{local_channel}"]
        environments:
          demo:
            conda: [python, "cemademo=1.0"]
        """
    folder = make_project(text)
    env = cema.Environment.from_spec(folder, name="demo", store=store)
    old = env.prefix
    assert old is not None
    with env.launch():
        (folder / "cema.yaml").write_text((folder / "cema.yaml").read_text().replace("1.0", "2.0"))
        run_cema("sync", cwd=folder)  # the env moves to new content; nothing references `old`
        out = run_cema("gc", cwd=folder).stdout
        assert "0 unused prefix(es) removed." in out
        assert env.execute("cemademo", "hello") == "hello world from cemademo 1.0"
    out = run_cema("gc", cwd=folder).stdout
    assert f"removing {old}" in out
    assert not old.exists()
