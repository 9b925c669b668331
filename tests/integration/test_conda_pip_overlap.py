"""One distribution from conda and pip at once: the pip entry is left out, or refused."""

from __future__ import annotations

import json
import os
import subprocess
from importlib import resources
from pathlib import Path

import pytest
import yaml

import cema
from cema.engines.pypi_names import pypi_name
from tests.channel_builder import build_channel, pypi_dist_package


@pytest.fixture(scope="module")
def msgpack_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conda-forge's name for PyPI ``msgpack``: ``msgpack-python`` 1.0.8, with its dist-info."""
    package = pypi_dist_package("msgpack-python", "1.0.8", dist="msgpack")
    return build_channel(tmp_path_factory.mktemp("msgpack-channel"), [package])


def project_yaml(local_channel: Path, msgpack_channel: Path, pip: str) -> str:
    return f"""\
        version: 1
        channels: ["{local_channel}", "{msgpack_channel}"]
        environments:
          overlap:
            conda: [python, "msgpack-python=1.0.8"]
            pip: {pip}
        """


def locked_platform(folder: Path) -> dict:
    doc = yaml.safe_load((folder / "cema.lock").read_text())
    return next(iter(doc["environments"]["overlap"]["platforms"].values()))


def test_the_mapping_is_packaged_data_with_its_source() -> None:
    data = resources.files("cema").joinpath("data/conda_pypi.json")
    assert len(data.read_bytes()) < 300_000
    about = json.loads(data.read_text("utf-8"))["about"]
    assert about["source"].startswith("https://github.com/prefix-dev/parselmouth/")
    assert "BSD 3-Clause" in about["license"]
    assert pypi_name("msgpack-python") == "msgpack"
    assert pypi_name("pytorch") == "torch"
    assert pypi_name("Matplotlib-Base") == "matplotlib"
    assert pypi_name("six") == "six"  # not listed: its own name
    # conda names are looked up as they are: these are two conda packages
    assert pypi_name("ruamel.yaml") == "ruamel-yaml"
    assert pypi_name("ruamel_yaml") == "ruamel-yaml-conda"


def test_a_pip_entry_conda_already_meets_is_left_out(
    local_channel: Path, msgpack_channel: Path, make_project, run_cema, store
) -> None:
    folder = make_project(project_yaml(local_channel, msgpack_channel, '["msgpack>=1.0"]'))
    locked = run_cema("lock", cwd=folder)
    content = locked_platform(folder)
    assert content["pip"] == [], "pip would install msgpack over conda's msgpack-python"
    assert "msgpack-python" in [r["name"] for r in content["conda"]]
    assert not content.get("omitted")
    assert "'msgpack>=1.0' is left out" in locked.stderr
    assert "msgpack-python 1.0.8" in locked.stderr

    run_cema("sync", "--frozen", cwd=folder)
    prefix = cema.Project.load(folder, store=store).prefix("overlap")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", "import msgpack; print(msgpack.FROM_CONDA)"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    assert out == "True"
    (info,) = prefix.glob("lib/python*/site-packages/msgpack-*.dist-info")
    assert (info / "INSTALLER").read_text() == "conda\n"


def test_a_pip_entry_conda_cannot_meet_is_refused_naming_both(
    local_channel: Path, msgpack_channel: Path, make_project, run_cema
) -> None:
    folder = make_project(project_yaml(local_channel, msgpack_channel, '["msgpack<1.0"]'))
    proc = run_cema("lock", cwd=folder, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    error = next(line for line in proc.stderr.splitlines() if line.startswith("error:"))
    assert "'msgpack<1.0'" in error
    assert "msgpack-python" in error and "1.0.8" in error
    assert "hint:" in proc.stderr
    assert not (folder / "cema.lock").exists()


def test_an_optional_pip_entry_conda_cannot_meet_is_left_out(
    local_channel: Path, msgpack_channel: Path, make_project, run_cema
) -> None:
    pip = '[{name: "msgpack<1.0", optional: true}]'
    folder = make_project(project_yaml(local_channel, msgpack_channel, pip))
    run_cema("lock", cwd=folder)
    content = locked_platform(folder)
    assert content["pip"] == []
    assert content["omitted"] == ["msgpack<1.0"]


@pytest.mark.network
def test_a_pip_dependency_conda_installs_is_not_locked_again(
    local_channel: Path, msgpack_channel: Path, make_project, run_cema
) -> None:
    # cachecontrol needs msgpack: conda's (msgpack-python) is that distribution
    folder = make_project(project_yaml(local_channel, msgpack_channel, '["cachecontrol==0.14.0"]'))
    run_cema("lock", cwd=folder)
    names = [r["name"] for r in locked_platform(folder)["pip"]]
    assert "cachecontrol" in names
    assert "msgpack" not in names
