"""``link: copy``: prefixes with files of their own, safe to edit, at an address of their own.

Real conda-forge archives through the real ``cema`` console script and the embedded engine, and
a real micromamba 2 (skipped, saying why, where there is none).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cema
from cema.model.hashing import prefix_address
from cema.model.receipt import Receipt
from cema.model.spec import current_platform
from cema.store import RECEIPT_NAME
from tests.conftest import CLI_TIMEOUT_S, cema_environ
from tests.integration import micromamba_fixtures
from tests.integration.test_micromamba_scripts import run_script, write_script

real_micromamba = micromamba_fixtures.real_micromamba

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(
        current_platform() != "linux-64", reason="the conda-forge test archives are linux-64 builds"
    ),
]

#: the console script installed beside the interpreter running the tests
CEMA = Path(sys.executable).with_name("cema")
#: what an edit appends to a file of a prefix
EDIT = b"\n# edited in place by a user\n"


def cema_cli(store: cema.Store, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real ``cema`` command; fails the test on a non-zero exit, showing its output."""
    if not CEMA.is_file():
        pytest.skip(f"no `cema` console script beside {sys.executable}")
    proc = subprocess.run(
        [str(CEMA), *map(str, args)],
        cwd=cwd,
        env=cema_environ(store.root),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, f"`cema {args}`:\n{proc.stdout}\n{proc.stderr}"
    return proc


def regular_files(prefix: Path) -> Iterator[Path]:
    """Every regular file of ``prefix`` (symbolic links left out: they are not linked files)."""
    for root, _, names in os.walk(prefix):
        for name in names:
            path = Path(root, name)
            if not path.is_symlink():
                yield path


def shared_files(prefix: Path) -> list[str]:
    """The files of ``prefix`` with another name somewhere (a hard link), relative paths."""
    return sorted(
        str(p.relative_to(prefix)) for p in regular_files(prefix) if p.stat().st_nlink > 1
    )


def receipt_json(prefix: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((prefix / RECEIPT_NAME).read_text("utf-8"))
    return data


def two_envs(channel: Path, *, engine: str = "") -> str:
    return f"""\
        version: 1
        channels: ["{channel}"]
        platforms: [linux-64]
        {engine}
        environments:
          shared:
            conda: [xz, ncurses]
          own:
            conda: [xz, ncurses]
            link: copy
        """


@pytest.fixture
def synced(conda_forge_channel: Path, make_project, store: cema.Store) -> Path:
    """A project with one hard-linked and one copied env of the same content, synced."""
    folder = make_project(two_envs(conda_forge_channel))
    cema_cli(store, "sync", cwd=folder)
    return folder


def test_a_copy_env_has_files_of_its_own_and_an_address_of_its_own(
    synced: Path, store: cema.Store
) -> None:
    project = cema.Project.load(synced, store=store)
    shared, own = project.prefix("shared"), project.prefix("own")
    assert shared != own  # the same content, two prefixes
    assert shared_files(shared)  # the default: files shared with the package cache
    assert shared_files(own) == []  # copy: every file has st_nlink == 1
    assert any(p.name == "xz" for p in regular_files(own))

    # the hard-linked prefix keeps the address it always had: the content hash in cema.lock
    lock = project.read_lock()
    content = lock.env("own").for_platform("linux-64").content_hash
    assert lock.env("shared").for_platform("linux-64").content_hash == content
    assert shared.name == content
    assert own.name == prefix_address(content, "copy") != content

    # the receipt says how the prefix was linked; a hard-linked one's is written as before
    assert receipt_json(own)["link"] == "copy"
    assert "link" not in receipt_json(shared)
    assert Receipt.from_json((shared / RECEIPT_NAME).read_text("utf-8")).link == "hardlink"

    # both verify, fast and full
    for name in ("shared", "own"):
        cema_cli(store, "verify", "-e", name, "--full", cwd=synced)  # exits 0: intact


def test_editing_a_copy_env_leaves_the_cache_and_other_prefixes_intact(
    synced: Path, store: cema.Store
) -> None:
    project = cema.Project.load(synced, store=store)
    shared, own = project.prefix("shared"), project.prefix("own")
    # a file the hard-linked prefix shares with the package cache
    name = next(n for n in shared_files(shared) if n.endswith(".h"))
    linked = shared / name
    cached = [
        p for p in regular_files(store.root / "pkgs") if p.stat().st_ino == linked.stat().st_ino
    ]
    assert cached, f"{name} is hard-linked from the package cache"
    before = linked.read_bytes()

    with (own / name).open("ab") as fh:  # in place: the file, not a replacement
        fh.write(EDIT)

    assert (own / name).read_bytes() == before + EDIT
    assert linked.read_bytes() == before  # the other prefix did not change
    assert cached[0].read_bytes() == before  # nor did the package cache
    cema_cli(store, "verify", "-e", "shared", "--full", cwd=synced)
    # a third project with the same content links the cache as it was
    other = synced.parent / "other"
    other.mkdir()
    (other / "cema.yaml").write_text((synced / "cema.yaml").read_text("utf-8"), "utf-8")
    cema_cli(store, "sync", "-e", "shared", cwd=other)
    assert cema.Project.load(other, store=store).prefix("shared") == shared
    assert linked.read_bytes() == before


def test_two_projects_never_share_a_prefix_with_different_link_modes(
    conda_forge_channel: Path, make_project, store: cema.Store
) -> None:
    body = f"""\
        version: 1
        channels: ["{conda_forge_channel}"]
        platforms: [linux-64]
        {{link}}
        environments:
          tools:
            conda: [xz]
        """
    hard = make_project(body.format(link=""), folder=Path("hard"))
    copy = make_project(body.format(link="link: copy"), folder=Path("copy"))
    for folder in (hard, copy):
        cema_cli(store, "sync", cwd=folder)
    hard_prefix = cema.Project.load(hard, store=store).prefix("tools")
    copy_prefix = cema.Project.load(copy, store=store).prefix("tools")
    assert hard_prefix != copy_prefix
    assert shared_files(hard_prefix) and shared_files(copy_prefix) == []
    # the lock is the same: the link mode is how this machine installs, not what is locked
    assert (hard / "cema.lock").read_text("utf-8") == (copy / "cema.lock").read_text("utf-8")


def test_switching_the_link_mode_builds_another_prefix_without_locking(
    synced: Path, store: cema.Store
) -> None:
    spec = synced / "cema.yaml"
    lock_before = (synced / "cema.lock").read_text("utf-8")
    shared = cema.Project.load(synced, store=store).prefix("shared")
    spec.write_text(spec.read_text("utf-8").replace("link: copy", "link: hardlink"), "utf-8")
    out = cema_cli(store, "sync", cwd=synced)
    assert "up to date" not in out.stdout
    assert cema.Project.load(synced, store=store).prefix("own") == shared  # now the same prefix
    assert (synced / "cema.lock").read_text("utf-8") == lock_before


def test_sync_link_copy_overrides_the_spec_for_this_run(
    conda_forge_channel: Path, make_project, store: cema.Store
) -> None:
    folder = make_project(two_envs(conda_forge_channel))
    project = cema.Project.load(folder, store=store)
    result = project.sync(link="copy")  # what `cema sync --link copy` passes
    assert result.prefixes["shared"] == result.prefixes["own"]
    assert shared_files(result.prefixes["shared"]) == []
    again = cema.Project.load(folder, store=store).sync()  # the spec's own modes again
    assert shared_files(again.prefixes["shared"])
    assert again.prefixes["own"] == result.prefixes["own"]
    with pytest.raises(ValueError, match="unknown link mode"):
        project.sync(link="symlink")  # type: ignore[arg-type]


def test_a_bad_link_value_is_one_error_line(make_project, store: cema.Store) -> None:
    folder = make_project(
        """\
        version: 1
        environments:
          tools:
            conda: [xz]
            link: symlink
        """
    )
    proc = subprocess.run(
        [str(CEMA), "lock"],
        cwd=folder,
        env=cema_environ(store.root),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 1
    error, hint = proc.stderr.strip().splitlines()
    assert (
        error.startswith("error: ") and "cema.yaml" in error and "environments.tools.link" in error
    )
    assert "'symlink' is not one of hardlink, copy" in error
    assert hint.startswith("hint: ")


# --- micromamba: the engine and the printed script ---------------------------------------------


@pytest.mark.parametrize("how", ["engine", "script"])
def test_micromamba_copies_too(
    conda_forge_channel: Path,
    make_project,
    store: cema.Store,
    run_cema,
    tmp_path: Path,
    real_micromamba: Path,
    how: str,
) -> None:
    folder = make_project(two_envs(conda_forge_channel, engine="engine: micromamba"))
    if how == "engine":
        cema_cli(store, "sync", "--micromamba", real_micromamba, cwd=folder)
    else:
        cema_cli(store, "lock", cwd=folder)
        script = write_script(run_cema, folder, tmp_path / "sync.sh")
        assert script.read_text("utf-8").count("--always-copy") == 1
        done = run_script(script, binary=real_micromamba, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        # registered by a sync that finds both prefixes built: nothing to do
        assert "up to date" in cema_cli(store, "sync", cwd=folder).stdout
    project = cema.Project.load(folder, store=store)
    shared, own = project.prefix("shared"), project.prefix("own")
    assert shared != own
    assert shared_files(shared)  # micromamba hard-links by default too
    assert shared_files(own) == []
    assert receipt_json(own)["link"] == "copy" and receipt_json(own)["engine"] == "micromamba"
    for name in ("shared", "own"):
        cema_cli(store, "verify", "-e", name, "--full", cwd=folder)


# --- the pip layer: uv hard-links from its cache unless told to copy ----------------------------


@pytest.mark.network
def test_the_pip_layer_of_a_copy_env_is_copied(
    local_channel: Path, make_project, store: cema.Store
) -> None:
    folder = make_project(
        f"""\
        version: 1
        channels: ["{local_channel}"]
        link: copy
        environments:
          mixed:
            conda: [python]
            pip: ["six==1.16.0"]
          tools:
            pip: ["six==1.16.0"]
        """
    )
    cema_cli(store, "sync", cwd=folder)
    project = cema.Project.load(folder, store=store)
    for name in ("mixed", "tools"):
        prefix = project.prefix(name)
        (six,) = prefix.glob("lib/python*/site-packages/six.py")
        assert six.stat().st_nlink == 1
        assert shared_files(prefix) == []
        assert receipt_json(prefix)["link"] == "copy"
        cema_cli(store, "verify", "-e", name, "--full", cwd=folder)
