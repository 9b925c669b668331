"""Dependency entries with options, and install commands: locked and synced for real."""

from __future__ import annotations

from pathlib import Path

import pytest

import cema
from cema.model.lockio import read_lock
from cema.store import RECEIPT_NAME
from tests.integration import micromamba_fixtures

micromamba_double = micromamba_fixtures.micromamba_double


def project(make_project, channel: Path, env_body: str, platforms: str = "[linux-64]") -> Path:  # type: ignore[no-untyped-def]
    return make_project(
        f"""\
        version: 1
        channels: ["{channel}"]
        platforms: {platforms}
        environments:
          e:
{env_body}
        """
    )


def test_per_platform_entries_are_locked_exactly_there(
    local_channel: Path, make_project, store: cema.Store
) -> None:
    folder = project(
        make_project,
        local_channel,
        """\
            conda:
              - {name: cemahello, platforms: [linux-64]}
              - {name: "cemademo=2.0", platforms: [osx-arm64], dependencies: false}
        """,
        platforms="[linux-64, osx-arm64]",
    )
    lock = cema.Project.load(folder, store=store).lock()
    linux = lock.envs["e"].platforms["linux-64"]
    mac = lock.envs["e"].platforms["osx-arm64"]
    assert [r.name for r in linux.conda] == ["cemahello"]
    assert [(r.name, r.version, r.no_deps) for r in mac.conda] == [("cemademo", "2.0", True)]
    text = (folder / "cema.lock").read_text()
    assert "no_deps: true" in text


def test_dependencies_false_installs_the_record_alone(
    conda_forge_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = project(
        make_project,
        conda_forge_channel,
        "            conda: [{name: openssl, dependencies: false}]",
    )
    run_cema("sync", cwd=folder)
    (content,) = read_lock(folder / "cema.lock").envs["e"].platforms.values()
    # openssl alone: ca-certificates and libgcc-ng, its dependencies, are not there
    assert [(r.name, r.no_deps) for r in content.conda] == [("openssl", True)]
    prefix = cema.Project.load(folder, store=store).prefix("e")
    assert (prefix / "bin" / "openssl").exists()
    assert sorted(p.name.rsplit("-", 2)[0] for p in (prefix / "conda-meta").glob("*.json")) == [
        "openssl"
    ]


def test_a_noarch_python_package_without_python_fails_clearly(
    local_channel: Path, make_project, run_cema
) -> None:
    folder = project(
        make_project, local_channel, "            conda: [{name: cemademo, dependencies: false}]"
    )
    proc = run_cema("sync", cwd=folder, check=False)
    assert proc.returncode == 1
    assert "no python version specified" in proc.stderr and "hint:" in proc.stderr


def test_optional_entry_that_no_channel_has_is_left_out_and_recorded(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = project(
        make_project,
        local_channel,
        """\
            conda:
              - cemahello
              - {name: no-such-package-anywhere, optional: true}
              - {name: "cemademo=9.9", optional: true, dependencies: false}
        """,
    )
    proc = run_cema("lock", "-v", cwd=folder)
    assert "leaving out the optional 'no-such-package-anywhere'" in proc.stderr
    (content,) = read_lock(folder / "cema.lock").envs["e"].platforms.values()
    assert content.omitted == ("cemademo=9.9", "no-such-package-anywhere")
    assert [r.name for r in content.conda] == ["cemahello"]
    # --frozen installs what the lock says, without trying the omitted entries again
    run_cema("sync", "--frozen", cwd=folder)
    run_cema("lock", "--check", cwd=folder)


def test_a_required_entry_nobody_has_is_an_error(
    local_channel: Path, make_project, run_cema
) -> None:
    folder = project(make_project, local_channel, "            conda: [no-such-package-anywhere]")
    proc = run_cema("lock", cwd=folder, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ")
    assert not (folder / "cema.lock").exists()


def test_install_commands_run_in_the_prefix_and_are_content(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    body = """\
            conda: [cemahello]
            install_commands:
              all: ["echo built-$CEMA_ENV > built.txt", "cemahello > hello.txt"]
    """
    folder = project(make_project, local_channel, body)
    run_cema("sync", cwd=folder)
    prefix = cema.Project.load(folder, store=store).prefix("e")
    assert (prefix / "built.txt").read_text().strip() == "built-e"
    assert str(prefix) in (prefix / "hello.txt").read_text()  # activated: PATH has the prefix
    # a changed command is other content: a new prefix, the old one untouched
    (folder / "cema.yaml").write_text((folder / "cema.yaml").read_text().replace("built-", "made-"))
    run_cema("sync", cwd=folder)
    new_prefix = cema.Project.load(folder, store=store).prefix("e")
    assert new_prefix != prefix
    assert (new_prefix / "built.txt").read_text().strip() == "made-e"
    assert (prefix / "built.txt").read_text().strip() == "built-e"


def test_a_failing_install_command_publishes_nothing(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    body = """\
            conda: [cemahello]
            install_commands:
              linux: ["echo about to fail; echo details >&2; exit 3"]
    """
    folder = project(make_project, local_channel, body)
    proc = run_cema("sync", cwd=folder, check=False)
    assert proc.returncode == 1
    assert "error: the install command" in proc.stderr and "exit code 3" in proc.stderr
    assert "details" in proc.stderr
    assert "Traceback" not in proc.stderr
    envs = store.root / "envs"
    leftovers = list(envs.iterdir()) if envs.exists() else []
    assert [p for p in leftovers if (p / RECEIPT_NAME).exists()] == []
    with pytest.raises(cema.EnvNotFoundError):
        cema.Project.load(folder, store=store).prefix("e")


def test_micromamba_scripts_run_install_commands_too(
    local_channel: Path, make_project, run_cema, store: cema.Store, micromamba_double: Path
) -> None:
    body = """\
            conda: [cemahello]
            install_commands:
              all: ["echo built-$CEMA_ENV > 'built file.txt'"]
              windows: ["echo never on linux > never.txt"]
    """
    folder = project(make_project, local_channel, body)
    run_cema("sync", "--micromamba", str(micromamba_double), cwd=folder)
    prefix = cema.Project.load(folder, store=store).prefix("e")
    assert (prefix / "built file.txt").read_text().strip() == "built-e"
    assert not (prefix / "never.txt").exists()
    # the embedded engine reaches the same address: nothing to build
    assert "up to date" in run_cema("sync", "--engine", "rattler", cwd=folder).stdout


def test_dependencies_false_follows_channel_priority(
    tmp_path: Path, make_project, store: cema.Store
) -> None:
    from tests.channel_builder import Package, build_channel

    first = build_channel(
        tmp_path / "first", [Package(name="prio", version="1.0", noarch="generic")]
    )
    second = build_channel(
        tmp_path / "second", [Package(name="prio", version="2.0", noarch="generic")]
    )
    folder = make_project(
        f"""\
        version: 1
        channels: ["{first}", "{second}"]
        platforms: [linux-64]
        environments:
          e:
            conda: [{{name: prio, dependencies: false}}]
        """
    )
    lock = cema.Project.load(folder, store=store).lock()
    (record,) = lock.envs["e"].platforms["linux-64"].conda
    assert (record.version, record.no_deps) == ("1.0", True)
    assert record.channel.rstrip("/").endswith("/first")
