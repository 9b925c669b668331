"""Real conda-forge archives and repodata from ../shared: sync, run, update, lock (else skip)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

import cema
from cema.model.spec import current_platform
from cema.store import RECEIPT_NAME

pytestmark = pytest.mark.shared


def ssl_yaml(channel: Path, openssl: str, ca: str) -> str:
    return f"""\
        version: 1
        channels: ["{channel}"]
        platforms: [linux-64]
        environments:
          ssl:
            conda: ["openssl={openssl}", "ca-certificates={ca}"]
        """


def locked_versions(folder: Path, env: str, platform: str = "linux-64") -> dict[str, str]:
    doc = yaml.safe_load((folder / "cema.lock").read_text())
    records = doc["environments"][env]["platforms"][platform]["conda"]
    return {r["name"]: r["version"] for r in records}


#: installs and runs need linux-64 (the archives' platform); locking works anywhere
installs = pytest.mark.skipif(
    current_platform() != "linux-64", reason="the conda-forge test archives are linux-64 builds"
)


@installs
def test_sync_xz_and_run_it(conda_forge_channel: Path, make_project, run_cema, store) -> None:
    folder = make_project(
        f"""\
        version: 1
        channels: ["{conda_forge_channel}"]
        platforms: [linux-64]
        environments:
          xz:
            conda: [xz]
        """
    )
    run_cema("sync", cwd=folder)
    assert locked_versions(folder, "xz")["xz"] == "5.2.6"
    prefix = cema.Project.load(folder, store=store).prefix("xz")
    assert (prefix / RECEIPT_NAME).is_file()
    direct = subprocess.run(
        [str(prefix / "bin" / "xz"), "--version"], capture_output=True, text=True, check=True
    )
    assert "xz (XZ Utils) 5.2.6" in direct.stdout
    via_cli = run_cema("run", "xz", "--", "xz", "--version", cwd=folder)
    assert "5.2.6" in via_cli.stdout
    # nothing in the prefix names the staging folder it was built in
    staging = str(store.root / "staging")
    for path in (prefix / "conda-meta").glob("*.json"):
        assert staging not in path.read_text()


@installs
def test_openssl_and_ca_certificates_move_through_a_relock(
    conda_forge_channel: Path, make_project, run_cema, store
) -> None:
    folder = make_project(ssl_yaml(conda_forge_channel, "3.2.1", "2024.2.2"))
    run_cema("sync", cwd=folder)
    old = cema.Project.load(folder, store=store).prefix("ssl")
    before = locked_versions(folder, "ssl")
    assert before["openssl"] == "3.2.1"
    assert before["ca-certificates"] == "2024.2.2"
    out = subprocess.run(
        [str(old / "bin" / "openssl"), "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("OpenSSL 3.2.1")

    make_project(ssl_yaml(conda_forge_channel, "3.3.1", "2024.6.2"))
    run_cema("lock", cwd=folder)
    after = locked_versions(folder, "ssl")
    (update,) = json.loads(run_cema("plan", "--json", cwd=folder).stdout)["actions"]
    assert update["action"] == "update"
    assert update["from"] == old.name
    expected_changed = sorted(
        [n, before[n], after[n]] for n in before.keys() & after.keys() if before[n] != after[n]
    )
    # exactly the two packages that moved, with their exact versions
    assert update["changed"] == [
        ["ca-certificates", "2024.2.2", "2024.6.2"],
        ["openssl", "3.2.1", "3.3.1"],
    ]
    assert update["changed"] == expected_changed
    assert update["added"] == sorted([n, after[n]] for n in after.keys() - before.keys())
    assert update["removed"] == sorted([n, before[n]] for n in before.keys() - after.keys())

    run_cema("sync", "--locked", cwd=folder)
    new = cema.Project.load(folder, store=store).prefix("ssl")
    assert new != old
    out = subprocess.run(
        [str(new / "bin" / "openssl"), "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("OpenSSL 3.3.1")
    # the old prefix is still whole and still runs its own openssl
    out = subprocess.run(
        [str(old / "bin" / "openssl"), "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("OpenSSL 3.2.1")


@installs
def test_certifi_update_with_the_local_python(
    conda_forge_channel: Path, local_channel: Path, make_project, run_cema, store
) -> None:
    """conda-forge's noarch ``certifi`` on top of the local channel's ``python`` (host's)."""

    def spec(version: str) -> str:
        return f"""\
            version: 1
            channels: ["{conda_forge_channel}", "{local_channel}"]
            environments:
              certs:
                conda: [python, "certifi={version}"]
            """

    folder = make_project(spec("2024.2.2"))
    run_cema("sync", cwd=folder)
    old = cema.Project.load(folder, store=store).prefix("certs")
    code = "import certifi, os; print(certifi.__version__, os.path.isfile(certifi.where()))"
    run = run_cema("run", "certs", "--", "python", "-c", code, cwd=folder)
    assert run.stdout.split() == ["2024.02.02", "True"]

    make_project(spec("2024.6.2"))
    run_cema("lock", cwd=folder)
    (update,) = json.loads(run_cema("plan", "--json", cwd=folder).stdout)["actions"]
    assert update["changed"] == [["certifi", "2024.2.2", "2024.6.2"]]
    assert update["added"] == [] and update["removed"] == []
    run_cema("sync", cwd=folder)
    run = run_cema("run", "certs", "--", "python", "-c", code, cwd=folder)
    assert run.stdout.split() == ["2024.06.02", "True"]
    assert cema.Project.load(folder, store=store).prefix("certs") != old


# --- locking against the real repodata subset (no installs) ---------------------------------------


def repodata_yaml(channel: Path) -> str:
    return f"""\
        version: 1
        channels: ["{channel}"]
        platforms: [linux-64]
        environments:
          py39:
            conda: ["python=3.9", pip]
          ranged:
            kind: conda  # python only would make a venv
            python: ">=3.9.10,<3.9.14"
          ssl30:
            conda: ["openssl>=3,<3.1"]
          old-openssl:
            conda: ["openssl 1.1.1.*", "xz<5.2.5"]
        """


def test_lock_real_specs_against_the_real_repodata(
    conda_forge_repodata: Path, make_project, run_cema
) -> None:
    folder = make_project(repodata_yaml(conda_forge_repodata))
    run_cema("lock", cwd=folder)
    py39 = locked_versions(folder, "py39")
    assert py39["python"] == "3.9.19"  # the newest 3.9 in the subset
    assert py39["pip"] == "24.0" and "openssl" in py39 and "setuptools" in py39
    assert locked_versions(folder, "ranged")["python"] == "3.9.13"
    assert locked_versions(folder, "ssl30")["openssl"] == "3.0.13"
    old = locked_versions(folder, "old-openssl")
    assert old["openssl"] == "1.1.1w" and old["xz"] == "5.2.4"

    doc = yaml.safe_load((folder / "cema.lock").read_text())
    for name, env in doc["environments"].items():
        assert list(env["platforms"]) == ["linux-64"], name
        for rec in env["platforms"]["linux-64"]["conda"]:
            assert len(rec["sha256"]) == 64, rec["name"]
            assert rec["subdir"] in ("linux-64", "noarch")
            # the channel is local: written relative to the lock's folder
            assert rec["url"].startswith("../"), rec["url"]
            assert rec["url"].endswith((".conda", ".tar.bz2"))
    assert run_cema("lock", "--check", cwd=folder).returncode == 0


def test_locking_twice_gives_a_byte_identical_lock(
    conda_forge_repodata: Path, make_project, run_cema
) -> None:
    folder = make_project(repodata_yaml(conda_forge_repodata))
    run_cema("lock", cwd=folder)
    first = (folder / "cema.lock").read_bytes()
    (folder / "cema.lock").unlink()
    run_cema("lock", cwd=folder)
    assert (folder / "cema.lock").read_bytes() == first
    # an upgrade of everything from the same repodata changes nothing either
    run_cema("lock", "--upgrade", cwd=folder)
    assert (folder / "cema.lock").read_bytes() == first
