"""The original imperative API (``EnvironmentManager``/``Environment``) on the declarative core.

Real engine on the local channel, real uv, real workers. Each method runs once as an old user
wrote it (camelCase names and keywords) and once in snake_case.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cema
from cema.errors import CemaError, EnvNotFoundError, SpecError
from cema.manager import EnvironmentManager, main_env_satisfies
from cema.model.lockio import read_lock
from cema.model.spec import current_platform, load_project
from cema.store import RECEIPT_NAME
from tests.integration import micromamba_fixtures

micromamba_double = micromamba_fixtures.micromamba_double

PROBE = Path(__file__).resolve().parents[1] / "data" / "manager" / "probe.py"
PROXY = "http://127.0.0.1:9"
on_linux_64 = pytest.mark.skipif(
    current_platform() != "linux-64", reason="the per-platform entries are written for linux-64"
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The manager's folder: its cema.yaml, cema.lock and (by default) its store."""
    return tmp_path / "manager"


@pytest.fixture
def manager(root: Path) -> Iterator[EnvironmentManager]:
    """A manager in ``root``; every worker it launched is stopped afterwards."""
    made = EnvironmentManager(root)
    yield made
    made.exit()


def deps(channel: Path, *conda: Any, **more: Any) -> dict[str, Any]:
    """The original ``dependencies`` dict, reading the local channel."""
    return {"channels": [str(channel)], "conda": list(conda), **more}


def output(proc: subprocess.Popen[str]) -> list[str]:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out.splitlines()


def piped() -> dict[str, Any]:
    return {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}


def built(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The messages of prefixes built while ``caplog`` was recording."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("building ")]


# --- the manager's project: spec, lock, store; create, load, exists ------------------------------


def test_an_old_user_script_runs_and_the_cli_reads_the_managers_project(
    manager: EnvironmentManager,
    root: Path,
    local_channel: Path,
    run_cema,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # camelCase, as the first users wrote it
    env = manager.create("demo", deps(local_channel, "cemademo==1.0"), forceExternal=False)
    assert manager.environmentExists("demo") and not manager.environmentExists("nodemo")
    assert (root / "cema.yaml").is_file() and (root / "cema.lock").is_file()
    prefix = env.prefix
    assert prefix is not None and (prefix / RECEIPT_NAME).is_file()
    assert prefix.parent.parent == root  # the manager's root is its store

    env.launch(additionalActivateCommands={"all": ["export FOO=bar"]}, logOutputInThread=False)
    assert env.launched()
    probe = env.importModule(str(PROBE))
    assert probe.prefix() == str(prefix)
    assert probe.environ("FOO") == "bar"
    assert env.execute(str(PROBE), "version_of", ["cemademo"]) == "1.0"
    # the original Popen defaults: text lines on process.stdout, stderr merged in
    with env.executeCommands(["echo $CONDA_PREFIX", "echo $PATH >&2"]) as proc:
        lines = [line.rstrip("\n") for line in proc.stdout]
    assert proc.returncode == 0
    conda_prefix, path = lines[-2:]
    assert conda_prefix == str(prefix) and path.split(os.pathsep)[0] == str(prefix / "bin")
    env.exit()
    assert not env.launched()

    # the CLI reads the same spec, lock and store: its own store ($CEMA_HOME) is elsewhere
    plan = run_cema("plan", "--project", root, cwd=tmp_path).stdout
    assert plan.strip() == f"reuse   demo -> {prefix}"
    listed = run_cema("list", "--project", root, cwd=tmp_path).stdout
    assert "demo" in listed and str(prefix) in listed and "not synced" not in listed

    # same name, same spec: the same env, nothing locked or built
    inventory = manager.store.inventory()
    lock_text = (root / "cema.lock").read_text()
    with caplog.at_level(logging.INFO, logger="cema"):
        again = manager.create("demo", deps(local_channel, "cemademo==1.0"))
    assert again is env and again.prefix == prefix
    assert built(caplog) == [] and "locking" not in caplog.text
    assert manager.store.inventory() == inventory  # same prefixes, same receipts (timestamps)
    assert (root / "cema.lock").read_text() == lock_text

    # a new manager on the same root (the next run of the program) finds the env as it was
    later = EnvironmentManager(root)
    assert later.environmentExists("demo")
    assert later.load("demo").prefix == prefix


def test_same_name_new_spec_is_an_update_to_a_new_prefix(
    manager: EnvironmentManager,
    root: Path,
    local_channel: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = manager.create("demo", deps(local_channel, "cemademo==1.0"))
    old_prefix = first.prefix
    assert manager.environment_exists("demo")
    with caplog.at_level(logging.INFO, logger="cema"):
        second = manager.create("demo", deps(local_channel, "cemademo==2.0"))
    assert second.prefix != old_prefix and second.prefix is not None
    assert len(built(caplog)) == 1
    assert any(
        r.name == "cema.sync" and r.getMessage().startswith("updating demo") for r in caplog.records
    ), caplog.text
    (content,) = read_lock(root / "cema.lock").envs["demo"].platforms.values()
    assert {r.name: r.version for r in content.conda}["cemademo"] == "2.0"
    assert manager.load("demo").prefix == second.prefix
    assert EnvironmentManager(root).load("demo").prefix == second.prefix
    # the old prefix stays until `cema gc` finds nothing references it
    assert old_prefix is not None and (old_prefix / RECEIPT_NAME).is_file()
    with second.launch(log_output_in_thread=False):
        assert second.import_module(str(PROBE)).version_of("cemademo") == "2.0"
    assert not second.launched()


def test_load_and_exists_on_unknown_envs(manager: EnvironmentManager, local_channel: Path) -> None:
    assert not manager.environment_exists("ghost")
    with pytest.raises(EnvNotFoundError, match="ghost"):
        manager.load("ghost")
    manager.create("real", deps(local_channel, "cemahello"))
    with pytest.raises(EnvNotFoundError, match="ghost"):
        manager.load("ghost")
    with pytest.raises(EnvNotFoundError, match="ghost"):
        manager.install("ghost", {"conda": ["cemademo"]})
    with pytest.raises(SpecError, match="not a valid environment name"):
        manager.create("../escape", deps(local_channel, "cemahello"))


# --- the dependencies dict: per-platform entries, dependencies: false, optional -----------------


@on_linux_64
def test_dict_entries_platforms_no_deps_and_optional(
    manager: EnvironmentManager,
    root: Path,
    local_channel: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dependencies = deps(
        local_channel,
        "python",
        {"name": "cemahello", "platforms": ["linux-64"]},
        {"name": "cemademo==2.0", "platforms": ["osx-arm64", "win-64"]},
        {"name": "cemademo==1.0", "platforms": ["linux-64"], "dependencies": False},
        {"name": "no-such-package-anywhere", "optional": True},
    )
    with caplog.at_level(logging.WARNING, logger="cema"):
        env = manager.create("entries", dependencies, force_external=True)
    assert "leaving out the optional 'no-such-package-anywhere'" in caplog.text

    # the manager locks its own platform only: the osx/win entry is declared, not locked
    declared = load_project(root).env("entries").conda
    assert [d.spec for d in declared if d.platforms == ("osx-arm64", "win-64")] == ["cemademo==2.0"]
    locked = read_lock(root / "cema.lock").envs["entries"]
    assert sorted(locked.platforms) == ["linux-64"]
    content = locked.platforms["linux-64"]
    records = {r.name: (r.version, r.no_deps) for r in content.conda}
    assert records["cemahello"] == ("1.0", False)
    assert records["cemademo"] == ("1.0", True)  # the linux one, alone: no 2.0 anywhere
    assert content.omitted == ("no-such-package-anywhere",)

    # commands as the original {"all"|"linux"|"mac"|"windows": [...]} dict work too
    # and an env given in popen_kwargs is the base the activation goes on top of
    commands = {"all": ["cemahello", "echo $MARK"], "windows": ["exit 7"]}
    base = {"PATH": "/usr/bin:/bin", "MARK": "kept"}
    proc = manager.execute_commands("entries", commands, popen_kwargs={**piped(), "env": base})
    lines = output(proc)
    assert str(env.prefix) in lines[-2] and lines[-1] == "kept"


# --- install commands ---------------------------------------------------------------------------


def test_install_commands_are_content(
    manager: EnvironmentManager, local_channel: Path, caplog: pytest.LogCaptureFixture
) -> None:
    commands = {"all": ["echo built-$CEMA_ENV > built.txt"], "windows": ["echo no > never.txt"]}
    env = manager.create(
        "cmds", deps(local_channel, "cemahello"), additionalInstallCommands=commands
    )
    first = env.prefix
    assert first is not None
    assert (first / "built.txt").read_text().strip() == "built-cmds"
    assert not (first / "never.txt").exists()
    with caplog.at_level(logging.INFO, logger="cema"):
        assert manager.create("cmds", deps(local_channel, "cemahello"), commands).prefix == first
    assert built(caplog) == []

    changed = {"all": ["echo made-$CEMA_ENV > built.txt"]}
    second = manager.create(
        "cmds", deps(local_channel, "cemahello"), additional_install_commands=changed
    ).prefix
    assert second is not None and second != first
    assert (second / "built.txt").read_text().strip() == "made-cmds"
    assert (first / "built.txt").read_text().strip() == "built-cmds"


def test_a_failing_install_command_leaves_nothing_ready(
    manager: EnvironmentManager, root: Path, local_channel: Path
) -> None:
    failing = {"linux": ["echo partial > partial.txt; echo oops-details >&2; exit 3"]}
    with pytest.raises(CemaError) as info:
        manager.create("bad", deps(local_channel, "cemahello"), additionalInstallCommands=failing)
    message = str(info.value)
    assert "install command" in message and "exit code 3" in message
    assert "oops-details" in message
    assert not manager.environmentExists("bad")
    with pytest.raises(EnvNotFoundError):
        manager.load("bad")
    envs = root / "envs"
    assert [
        p for p in (envs.iterdir() if envs.is_dir() else ()) if (p / RECEIPT_NAME).exists()
    ] == []
    assert list(root.rglob("partial.txt")) == []


# --- install: an Update while the first worker keeps running -------------------------------------


@pytest.mark.parametrize("style", ["camel", "snake"])
def test_install_is_an_update_while_the_running_worker_keeps_its_prefix(
    style: str,
    manager: EnvironmentManager,
    root: Path,
    local_channel: Path,
    run_cema,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = manager.create("grow", deps(local_channel, "cemademo==1.0"))
    old_prefix = env.prefix
    env.launch()
    worker_pid = env.execute(str(PROBE), "pid")
    lock_before = read_lock(root / "cema.lock").envs["grow"].for_platform(current_platform())

    with caplog.at_level(logging.INFO, logger="cema.sync"):
        if style == "camel":  # the manager's method, with the original keyword
            grown = manager.install(
                "grow", {"conda": ["cemahello"]}, additionalInstallCommands={"all": ["true"]}
            )
        else:  # the env's method
            grown = env.install({"conda": ["cemahello"]})
    assert grown is env
    updates = [r.getMessage() for r in caplog.records if r.getMessage().startswith("updating grow")]
    assert len(updates) == 1 and "cemahello" in updates[0], caplog.text
    assert env.prefix != old_prefix and (env.prefix / "bin" / "cemahello").exists()

    # the worker keeps running in the prefix it started in
    assert env.launched()
    assert env.execute(str(PROBE), "pid") == worker_pid
    assert env.execute(str(PROBE), "prefix") == str(old_prefix)
    assert old_prefix is not None and (old_prefix / RECEIPT_NAME).is_file()

    # the lock kept the records it had: cemademo and python are the same records
    lock_after = read_lock(root / "cema.lock").envs["grow"].for_platform(current_platform())
    before = {r.name: r for r in lock_before.conda}
    after = {r.name: r for r in lock_after.conda}
    assert set(after) == set(before) | {"cemahello"}
    assert all(after[name] == record for name, record in before.items())
    assert load_project(root).env("grow").conda[-1].spec == "cemahello"

    # relaunched, it runs in the new prefix
    env.exit()
    env.launch()
    assert env.execute(str(PROBE), "prefix") == str(env.prefix)
    # and `cema gc` collects the old prefix: nothing references it any more
    gc = run_cema("gc", "--project", root, cwd=root).stdout
    assert f"removing {old_prefix}" in gc and "1 unused prefix(es) removed." in gc
    assert not old_prefix.exists() and (env.prefix / RECEIPT_NAME).is_file()


def test_install_replaces_the_entry_of_a_package_the_env_has(
    manager: EnvironmentManager, root: Path, local_channel: Path
) -> None:
    env = manager.create(
        "up", deps(local_channel, "cemahello", f"{local_channel.as_uri()}::cemademo==1.0")
    )
    env.install({"conda": ["cemademo==2.0"]})  # an upgrade, not a conflicting second entry
    assert [d.spec for d in load_project(root).env("up").conda] == ["cemahello", "cemademo==2.0"]
    with env.launch():
        assert env.execute(str(PROBE), "version_of", ["cemademo"]) == "2.0"


def test_threads_creating_envs_at_once_lose_nothing(
    manager: EnvironmentManager, root: Path, local_channel: Path
) -> None:
    names = [f"t{i}" for i in range(4)]
    errors: list[BaseException] = []

    def create(name: str) -> None:
        try:
            manager.create(name, deps(local_channel, "cemahello"))
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sorted(load_project(root).environments) == names
    assert sorted(read_lock(root / "cema.lock").envs) == names
    later = EnvironmentManager(root)
    assert all(later.environment_exists(n) for n in names)
    # same content: one prefix for all four
    assert len({later.load(n).prefix for n in names}) == 1


def test_install_on_an_env_not_made_by_a_manager_says_so(
    local_channel: Path, store: cema.Store
) -> None:
    env = cema.Environment.from_spec(deps(local_channel, "cemahello"), name="inline", store=store)
    with pytest.raises(cema.EnvError, match="not made by an EnvironmentManager"):
        env.install({"conda": ["cemademo"]})


# --- proxies --------------------------------------------------------------------------------------


def files_naming(folder: Path, text: bytes) -> list[Path]:
    """Every regular file under ``folder`` whose bytes contain ``text``."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and text in path.read_bytes():
            found.append(path)
    return found


@pytest.mark.parametrize("style", ["camel", "snake"])
def test_proxies_reach_the_children_and_nothing_on_disk(
    style: str,
    root: Path,
    local_channel: Path,
    store: cema.Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = EnvironmentManager(root, store=store)  # a store of its own, outside root
    proxies = {"http": PROXY, "https": PROXY}
    before = {k: os.environ.get(k) for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy")}
    with caplog.at_level(logging.DEBUG):
        if style == "camel":
            manager.setProxies(proxies)
        else:
            manager.set_proxies(proxies)
        env = manager.create(
            "proxied",
            deps(local_channel, "python"),
            additional_install_commands={"all": ["echo built > built.txt"]},
        )
        try:
            env.launch()
            for variable in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
                assert env.execute(str(PROBE), "environ", [variable]) == PROXY
            proc = manager.execute_commands(
                "proxied", ["echo $HTTP_PROXY $https_proxy"], popen_kwargs=piped()
            )
            assert output(proc)[-1] == f"{PROXY} {PROXY}"
        finally:
            manager.exit()
    # this process's environment is as it was, and no log, file, lock or receipt names the proxy
    assert {k: os.environ.get(k) for k in before} == before
    assert PROXY not in caplog.text
    assert (env.prefix / "built.txt").is_file()  # install commands ran, in the store
    assert files_naming(root, PROXY.encode()) == []
    assert files_naming(store.root, PROXY.encode()) == []


def test_unknown_proxy_schemes_are_refused(manager: EnvironmentManager) -> None:
    with pytest.raises(SpecError, match="ftp"):
        manager.set_proxies({"ftp": PROXY})


# --- main-env reuse ----------------------------------------------------------------------------


def host_packaging() -> str:
    from importlib.metadata import version

    return version("packaging")


@pytest.mark.parametrize(
    ("dependencies", "expected"),
    [
        ({"pip": ["packaging>=1,<999"]}, True),
        ({"pip": ["packaging==0.0.1"]}, False),
        ({"pip": ["packaging<1"]}, False),
        ({"pip": ["no-such-distribution-here"]}, False),
        ({"pip": ["no-such-distribution-here; sys_platform == 'nonexistent-os'"]}, True),
        ({"pip": [{"name": "no-such-distribution-here", "platforms": ["zos-z"]}]}, True),
        ({"pip": [{"name": "packaging>=1", "dependencies": False}]}, True),
        ({"python": "2.7", "pip": ["packaging"]}, False),
        ({"conda": ["conda-forge::packaging"]}, False),  # the host is a venv, not a conda prefix
        ({"conda": [{"name": "packaging", "platforms": ["zos-z"]}], "pip": ["packaging"]}, True),
    ],
)
def test_main_env_satisfies_matches_versions_for_real(
    dependencies: dict[str, Any], expected: bool
) -> None:
    assert main_env_satisfies(dependencies) is expected


HOST_IS_A_CONDA_PREFIX = """
import json, sys
from cema.manager import EnvironmentManager, main_env_satisfies
cases = [{"conda": [spec]} for spec in sys.argv[2:]]
manager = EnvironmentManager(sys.argv[1])
made = manager.create("again", {"conda": ["cemademo>=1,<2", "python"]})
print(json.dumps([main_env_satisfies(c) for c in cases] + [made.is_main]))
"""


def test_main_env_reuse_reads_the_host_conda_prefix(
    manager: EnvironmentManager, local_channel: Path, tmp_path: Path
) -> None:
    import sysconfig

    env = manager.create("host", deps(local_channel, "cemademo==1.0"))
    assert env.prefix is not None
    specs = ["cemademo", "cemademo>=1,<2", "cemademo==2.0", "python", "cemahello"]
    # run as the host: an interpreter whose sys.prefix is that conda prefix, with cema importable
    repo = Path(__file__).resolve().parents[2]
    environ = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{sysconfig.get_paths()['purelib']}"}
    proc = subprocess.run(
        [str(env.python), "-c", HOST_IS_A_CONDA_PREFIX, str(tmp_path / "inner"), *specs],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [True, True, False, True, False, True]
    assert not (tmp_path / "inner" / "cema.yaml").exists()


def test_a_satisfied_create_returns_the_main_env(manager: EnvironmentManager, root: Path) -> None:
    env = manager.create("host", {"pip": ["packaging>=1,<999"]})
    assert env.is_main and env.launched()
    env.launch()
    assert env.execute(str(PROBE), "pid") == os.getpid()
    assert env.importModule(str(PROBE)).pid() == os.getpid()
    proc = env.execute_commands(
        ["echo $CEMA_TEST_MARK"],
        popen_kwargs={**piped(), "env": {**os.environ, "CEMA_TEST_MARK": "host"}},
    )
    assert output(proc) == ["host"]
    env.exit()
    assert not (root / "cema.yaml").exists()  # nothing declared, nothing built


@pytest.mark.network
def test_an_unsatisfied_pip_specifier_makes_a_real_env_from_pypi(
    manager: EnvironmentManager, root: Path, local_channel: Path
) -> None:
    other = "23.2" if host_packaging() != "23.2" else "24.0"
    # pip only: a venv
    venv = manager.create("pkg", {"pip": [f"packaging=={other}"]})
    assert not venv.is_main and venv.kind == "venv" and venv.prefix is not None
    proc = manager.executeCommands(
        "pkg",
        ["echo $VIRTUAL_ENV", "python -c 'import packaging; print(packaging.__version__)'"],
        popenKwargs=piped(),
    )
    assert output(proc)[-2:] == [str(venv.prefix), other]
    # conda from the local channel, pip on top
    mixed = manager.create(
        "mixed", deps(local_channel, "cemademo==1.0", pip=[f"packaging=={other}"])
    )
    assert mixed.kind == "conda"
    with mixed.launch():
        assert mixed.execute(str(PROBE), "version_of", ["packaging"]) == other
        assert mixed.execute(str(PROBE), "version_of", ["cemademo"]) == "1.0"
        assert mixed.execute(str(PROBE), "prefix") == str(mixed.prefix)
    (content,) = read_lock(root / "cema.lock").envs["mixed"].platforms.values()
    assert [(r.name, r.version) for r in content.pip] == [("packaging", other)]


# --- set_conda_path: the micromamba engine -----------------------------------------------------


@pytest.mark.parametrize("style", ["camel", "snake"])
def test_set_conda_path_builds_through_micromamba(
    style: str, manager: EnvironmentManager, local_channel: Path, micromamba_double: Path
) -> None:
    if style == "camel":
        manager.setCondaPath(micromamba_double)
    else:
        manager.set_conda_path(str(micromamba_double))
    env = manager.create(
        "mm", deps(local_channel, "cemahello"), {"all": ["echo built > built.txt"]}
    )
    assert env.prefix is not None and (env.prefix / "built.txt").is_file()
    receipt = manager.store.receipt(env.prefix.name)
    assert receipt is not None and receipt.engine == "micromamba"
    proc = env.execute_commands("cemahello", popen_kwargs=piped())
    assert str(env.prefix) in "\n".join(output(proc))


def test_a_main_env_answers_load_by_its_name(manager: EnvironmentManager) -> None:
    from importlib.metadata import version

    env = manager.create("here", {"pip": [f"packaging=={version('packaging')}"]})
    assert env.is_main
    assert manager.load("here") is env
    assert manager.environmentExists("here")
