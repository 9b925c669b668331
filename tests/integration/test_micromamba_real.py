"""The real micromamba 2: killed halfway and run again, built like the embedded engine, its errors.

The tests here run a real micromamba (skipped, saying why, where there is none; see
tests/integration/micromamba_fixtures.py): the test double cannot be killed halfway through a
link, nor compared file by file with rattler, nor fail in micromamba's own words.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import cema
from cema.store import RECEIPT_NAME
from tests.channel_builder import Package, PackageFile, build_local_channel
from tests.conftest import cema_argv, cema_environ
from tests.integration import micromamba_fixtures
from tests.integration.test_micromamba_scripts import (
    receipt_of,
    run_script,
    script_environ,
    write_script,
)

real_micromamba = micromamba_fixtures.real_micromamba

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the scripts need bash")

#: the variable naming the post-link gate folder: while ``<gate>/hold`` exists, the post-link
#: script of ``cemapost`` waits (micromamba runs post-link scripts as it links; rattler does not)
GATE_VARIABLE = "CEMA_TEST_POSTLINK_GATE"
KILL_TIMEOUT_S = 120.0


def postlink_gate_package() -> Package:
    """``cemapost``: linked after ``python`` and ``cemahello``, its post-link script holds.

    micromamba runs ``bin/.cemapost-post-link.sh`` right after linking the package: with
    ``$CEMA_TEST_POSTLINK_GATE/hold`` present the build stops there, half linked, and writes
    ``waiting``; without the variable the script does nothing.
    """
    script = (
        "#!/bin/sh\n"
        "# Cema tests: hold micromamba halfway through linking a prefix\n"
        f'gate="${{{GATE_VARIABLE}:-/nonexistent}}"\n'
        'if [ -e "$gate/hold" ]; then\n'
        '    echo "$$ $PREFIX" >> "$gate/waiting"\n'
        '    while [ -e "$gate/hold" ]; do :; done\n'
        "fi\n"
    ).encode()
    return Package(
        name="cemapost",
        version="1.0",
        noarch="generic",
        depends=("python", "cemahello"),
        files=(PackageFile(path="bin/.cemapost-post-link.sh", content=script, executable=True),),
    )


@pytest.fixture(scope="module")
def gate_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The standard local channel plus ``cemapost``."""
    return build_local_channel(
        tmp_path_factory.mktemp("postlink-channel"), extra=[postlink_gate_package()]
    )


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """A closed gate folder (``hold`` present); opened at the end whatever happens."""
    folder = tmp_path / "postlink-gate"
    folder.mkdir()
    (folder / "hold").touch()
    yield folder
    (folder / "hold").unlink(missing_ok=True)  # lets a post-link script orphaned by a kill go


def gate_project(channel: Path, make_project, run_cema) -> Path:
    folder = make_project(
        f"""\
        version: 1
        channels: ["{channel}"]
        environments:
          held:
            conda: [python, cemademo, cemahello, cemapost]
        """
    )
    run_cema("lock", cwd=folder)
    return folder


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def linked(prefix: Path) -> set[str]:
    """The names of the packages a prefix's ``conda-meta`` records."""
    return {p.name.rsplit("-", 2)[0] for p in (prefix / "conda-meta").glob("*.json")}


def assert_it_works(run_cema, folder: Path, store: cema.Store) -> Path:
    """``cema sync --frozen`` finds the env ready and ``cema run`` runs in it; its prefix."""
    assert "1 environment(s) up to date" in run_cema("sync", "--frozen", cwd=folder).stdout
    prefix = cema.Project.load(folder, store=store).prefix("held")
    hello = run_cema("run", "held", "--", "cemahello", cwd=folder)
    assert f"cemahello 1.0 installed in {prefix}" in hello.stdout
    shown = run_cema(
        "run", "held", "--", "python", "-c", "import cemademo; print(cemademo.__file__)", cwd=folder
    )
    assert shown.stdout.strip().startswith(str(prefix))
    return prefix


def hello_project(channel: Path, make_project) -> Path:
    """A project of one env, ``hello``: ``cemahello`` from ``channel``."""
    yaml = f'version: 1\nchannels: ["{channel}"]\nenvironments:\n  hello:\n    conda: [cemahello]\n'
    return make_project(yaml)


# --- killed halfway (SIGKILL, no trap runs), then run again ----------------------------------


@pytest.mark.parametrize("again", ["script", "sync"])
def test_kill_the_script_halfway_then_converge(
    gate_channel: Path,
    make_project,
    run_cema,
    store: cema.Store,
    tmp_path: Path,
    poll_until,
    gate: Path,
    real_micromamba: Path,
    again: str,
) -> None:
    folder = gate_project(gate_channel, make_project, run_cema)
    script = write_script(run_cema, folder, tmp_path / "sync.sh")
    environ = script_environ(real_micromamba, **{GATE_VARIABLE: str(gate)})
    with (tmp_path / "killed.log").open("wb") as log:
        proc = subprocess.Popen(
            ["bash", str(script)], cwd=tmp_path, env=environ, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    try:
        poll_until((gate / "waiting").exists, timeout_s=KILL_TIMEOUT_S, what="the post-link")
        (prefix,) = store.envs_dir.iterdir()  # the script builds in place, under its lock
        assert {"python", "cemahello"} <= linked(prefix)
        assert "cemapost" not in linked(prefix)  # halfway: micromamba is linking it
        assert not (prefix / RECEIPT_NAME).exists()
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    # nothing looks ready: no receipt, so no plan reuses it
    assert store.inventory() == {}
    assert not (prefix / RECEIPT_NAME).exists()
    (gate / "hold").unlink()

    if again == "script":
        done = run_script(script, binary=real_micromamba, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"cema: removing the unfinished prefix {prefix}" in done.stdout
    else:
        out = run_cema("-v", "sync", "--frozen", "--micromamba", real_micromamba, cwd=folder)
        assert "removing the incomplete prefix" in out.stderr
    assert receipt_of(prefix).engine == "micromamba"
    assert "cemapost" in linked(prefix)  # the whole lock, this time
    assert assert_it_works(run_cema, folder, store) == prefix


def test_kill_the_engine_halfway_then_sync_again(
    gate_channel: Path,
    make_project,
    run_cema,
    store: cema.Store,
    tmp_path: Path,
    poll_until,
    gate: Path,
    real_micromamba: Path,
) -> None:
    folder = gate_project(gate_channel, make_project, run_cema)
    environ = cema_environ(store.root, {GATE_VARIABLE: str(gate)})
    with (tmp_path / "killed.log").open("wb") as log:
        proc = subprocess.Popen(
            cema_argv("-vv", "sync", "--frozen", "--micromamba", real_micromamba),
            cwd=folder, env=environ, stdout=subprocess.DEVNULL, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    staging = store.root / "staging"
    try:
        poll_until((gate / "waiting").exists, timeout_s=KILL_TIMEOUT_S, what="the post-link")
        (building,) = staging.iterdir()  # the engine builds in staging, published by a rename
        assert "cemapost" not in linked(building)
        assert not store.envs_dir.is_dir() or list(store.envs_dir.iterdir()) == []
    finally:
        kill_group(proc)  # cema's group; micromamba (a group of its own) dies with its parent
    assert store.inventory() == {}
    assert not store.envs_dir.is_dir() or list(store.envs_dir.iterdir()) == []
    (gate / "hold").unlink()

    out = run_cema("-v", "sync", "--frozen", "--micromamba", real_micromamba, cwd=folder)
    assert out.stdout.startswith("create  held (conda) -> "), out.stdout + out.stderr
    prefix = assert_it_works(run_cema, folder, store)
    assert receipt_of(prefix).engine == "micromamba"
    assert "cemapost" in linked(prefix)
    assert not building.exists()  # the killed build's staging folder was cleared


# --- the same lock, built by the embedded engine and by micromamba --------------------------

#: the files an installer writes for itself, not from the packages
BOOKKEEPING = {"conda-meta/history", "CACHEDIR.TAG", RECEIPT_NAME}
#: what stands for the prefix path in the compared contents
PREFIX_TOKEN = b"<PREFIX>"


def installed(prefix: Path) -> dict[str, str]:
    """Each path in ``prefix`` → the sha256 of its content with the prefix path replaced.

    Symbolic links are compared by target, conda-meta records by what they install.
    """
    needle = str(prefix).encode()
    out: dict[str, str] = {}
    for path in sorted(prefix.rglob("*")):
        name = str(path.relative_to(prefix))
        if name in BOOKKEEPING or (path.is_dir() and not path.is_symlink()):
            continue
        if path.is_symlink():
            data = b"-> " + os.readlink(path).encode()
        elif name.startswith("conda-meta/") and name.endswith(".json"):
            data = json.dumps(meta_record(path), sort_keys=True).encode()
        else:
            data = path.read_bytes()
        mode = "x" if os.access(path, os.X_OK) and not path.is_symlink() else "-"
        out[name] = mode + hashlib.sha256(data.replace(needle, PREFIX_TOKEN)).hexdigest()
    return out


def meta_record(path: Path) -> dict[str, object]:
    """What a ``conda-meta`` record says was installed: the package and its files."""
    data = json.loads(path.read_text("utf-8"))
    return {
        "record": [data[k] for k in ("name", "version", "build", "sha256")],
        "files": sorted(data.get("files", [])),
    }


@pytest.mark.shared
def test_the_same_lock_builds_the_same_prefix_with_either_engine(
    conda_forge_channel: Path,
    local_channel: Path,
    make_project,
    run_cema,
    tmp_path: Path,
    real_micromamba: Path,
) -> None:
    from cema.model.spec import current_platform

    if current_platform() != "linux-64":
        pytest.skip("the conda-forge test archives are linux-64 builds")
    # real conda-forge archives (binary and text prefix placeholders: openssl, ncurses, xz...)
    # and the hand-made ones (python, a noarch: python package, a text placeholder)
    folder = make_project(
        f"""\
        version: 1
        channels: ["{conda_forge_channel}", "{local_channel}"]
        platforms: [linux-64]
        environments:
          same:
            conda: [python, cemademo, cemahello, xz, openssl, ncurses, readline, tk, libsqlite]
        """
    )
    run_cema("lock", cwd=folder)
    # two stores whose prefix paths have the same length: binary placeholders pad alike
    built: dict[str, Path] = {}
    for engine, store_name in (("rattler", "store-r"), ("micromamba", "store-m")):
        store = cema.Store(tmp_path / store_name)
        args = ["--store", str(store.root), "sync", "--engine", engine]
        if engine == "micromamba":
            args += ["--micromamba", str(real_micromamba)]
        run_cema(*args, cwd=folder)
        built[engine] = cema.Project.load(folder, store=store).prefix("same")
        assert receipt_of(built[engine]).engine == engine
    rattler, micromamba = built["rattler"], built["micromamba"]

    assert rattler.name == micromamba.name  # the same prefix address
    project = cema.Project.load(folder, store=cema.Store(tmp_path / "store-r"))
    (target,) = project.targets(project.read_lock(), ["same"])
    locked = sorted([r.name, r.version, r.build, r.sha256] for r in target.content.conda)
    for prefix in (rattler, micromamba):
        records = [meta_record(p)["record"] for p in (prefix / "conda-meta").glob("*.json")]
        assert sorted(records) == locked  # type: ignore[type-var]

    # micromamba compiles the noarch: python modules as it links (its default, as conda's; the
    # embedded engine leaves that to the first import): the one difference, and recorded
    pyc = "lib/python*/site-packages/cemademo/__pycache__/__init__.cpython-*.pyc"
    (compiled,) = (str(p.relative_to(micromamba)) for p in micromamba.glob(pyc))
    assert not list(rattler.glob(pyc))
    ours, theirs = installed(rattler), installed(micromamba)
    assert meta_files(micromamba, "cemademo") == [*meta_files(rattler, "cemademo"), compiled]
    del theirs[compiled]
    theirs = {p: v for p, v in theirs.items() if p != "conda-meta/" + meta_name(micromamba)}
    ours = {p: v for p, v in ours.items() if p != "conda-meta/" + meta_name(rattler)}
    assert sorted(ours) == sorted(theirs)  # the same paths
    assert [p for p in ours if ours[p] != theirs[p]] == []  # the same contents and modes
    assert any("openssl" in p for p in ours) and "bin/cemahello" in ours
    assert "bin/xz" in ours and "lib/pkgconfig/ncurses.pc" in ours  # binary, text placeholders


def meta_name(prefix: Path, package: str = "cemademo") -> str:
    (path,) = (prefix / "conda-meta").glob(f"{package}-*.json")
    return path.name


def meta_files(prefix: Path, package: str) -> list[str]:
    files: list[str] = json.loads((prefix / "conda-meta" / meta_name(prefix, package)).read_text())[
        "files"
    ]
    return sorted(files)


def test_verify_finds_a_micromamba_prefix_intact(
    local_channel: Path, make_project, run_cema, store: cema.Store, real_micromamba: Path
) -> None:
    folder = hello_project(local_channel, make_project)
    run_cema("sync", "--micromamba", real_micromamba, cwd=folder)
    # micromamba records the archive's size_in_bytes for files it rewrote (prefix placeholders)
    # and no prefix_placeholder: only their sha256_in_prefix describes them
    out = run_cema("verify", "--full", cwd=folder, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    out = run_cema("verify", cwd=folder, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


# --- errors: one `error:` line naming the env and the cause; micromamba's words under -v ------


def corrupt(archive: Path, how: str) -> None:
    data = archive.read_bytes()
    if how == "garbage":
        archive.write_bytes(b"not the locked archive")
    elif how == "truncated":
        archive.write_bytes(data[: len(data) // 2])
    else:
        archive.unlink()


def error_lines(stderr: str) -> list[str]:
    """``stderr`` less its ``hint:`` line; fails on a traceback."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if not line.startswith("hint: ")]


@pytest.mark.parametrize(
    ("how", "cause"),
    [
        ("garbage", "SHA256 doesn't match"),
        ("truncated", "SHA256 doesn't match"),
        ("deleted", "cemahello-1.0-0.tar.bz2"),
    ],
)
def test_a_broken_archive_is_one_error_line(
    local_channel: Path,
    make_project,
    run_cema,
    store: cema.Store,
    tmp_path: Path,
    real_micromamba: Path,
    how: str,
    cause: str,
) -> None:
    channel = tmp_path / "channel"
    shutil.copytree(local_channel, channel)
    folder = hello_project(channel, make_project)
    run_cema("lock", cwd=folder)
    (archive,) = channel.glob("noarch/cemahello-*.tar.bz2")
    corrupt(archive, how)

    out = run_cema("sync", "--micromamba", real_micromamba, cwd=folder, check=False)
    assert out.returncode == 1
    (error,) = error_lines(out.stderr)
    assert error.startswith("error: micromamba could not build environment 'hello' (exit code")
    assert cause in error
    assert "hint: `cema -v sync` shows micromamba's output." in out.stderr
    assert store.inventory() == {}

    verbose = run_cema("-v", "sync", "--micromamba", real_micromamba, cwd=folder, check=False)
    assert verbose.returncode == 1
    detail = [line for line in error_lines(verbose.stderr) if line.startswith("INFO: ")]
    assert any("libmamba" in line for line in detail)  # micromamba's own lines, as detail
    assert [line for line in error_lines(verbose.stderr) if line.startswith("error:")] == [error]


# --- the PowerShell script, under pwsh ----------------------------------------------------------

#: why there is no pwsh on these machines (checked: Debian 12's archive, PyPI, npm)
NO_PWSH = (
    "pwsh is not installed: Debian 12's archive has no `powershell` package, PyPI and npm ship"
    " no pwsh binary, and PowerShell's own packages (Microsoft's apt repository, the NuGet"
    " dotnet tool) cannot be reached from these machines"
)
PARSE = (
    "$errors = $null; [System.Management.Automation.Language.Parser]::ParseFile($args[0],"
    " [ref]$null, [ref]$errors) | Out-Null; $errors | ForEach-Object { $_.ToString() };"
    " exit @($errors).Count"
)


def test_the_powershell_script_parses_and_runs_under_pwsh(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path
) -> None:
    pwsh = shutil.which("pwsh")
    if pwsh is None:
        pytest.skip(NO_PWSH)
    folder = hello_project(local_channel, make_project)
    run_cema("lock", cwd=folder)
    script = tmp_path / "sync.ps1"
    script.write_text(run_cema("plan", "--script", "powershell", cwd=folder).stdout)
    parsed = subprocess.run(
        [pwsh, "-NoProfile", "-Command", PARSE, str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr  # the `bash -n` of PowerShell
    if os.name != "nt":
        pytest.skip("the PowerShell script is written for Windows paths: run only on Windows")
    binary, why_not = micromamba_fixtures.find_real_micromamba()
    if binary is None:
        pytest.skip(why_not)
    home = str(tmp_path / "home")  # micromamba's environments.txt goes there, not the user's
    (tmp_path / "home").mkdir()
    done = subprocess.run(
        [pwsh, "-NoProfile", "-File", str(script)],
        env={**os.environ, "CEMA_MICROMAMBA": str(binary), "HOME": home, "USERPROFILE": home},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "up to date" in run_cema("sync", cwd=folder).stdout
    assert receipt_of(cema.Project.load(folder, store=store).prefix("hello")).engine == "micromamba"
