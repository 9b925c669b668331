"""The pip layer and pip-only envs from PyPI for real (uv); skipped where PyPI is unreachable."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import cema
from cema.store import RECEIPT_NAME
from tests.channel_builder import Package, PackageFile, build_channel, noarch_python_package

pytestmark = pytest.mark.network


def prefix_python(prefix: Path, code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(prefix / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()


def lock_doc(folder: Path) -> dict:
    return yaml.safe_load((folder / "cema.lock").read_text())


@pytest.fixture(scope="module")
def conda_six_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A channel with a hand-made conda ``six`` 1.16.0 that says it came from conda."""
    six = noarch_python_package("six", "1.16.0")
    six = Package(
        name=six.name,
        version=six.version,
        build=six.build,
        noarch="python",
        depends=("python",),
        files=(
            PackageFile(
                path="site-packages/six.py",
                content=b'__version__ = "1.16.0"\nFROM_CONDA = True\n',
            ),
        ),
    )
    return build_channel(tmp_path_factory.mktemp("conda-six"), [six])


def test_pip_layer_installs_into_the_conda_prefix_with_hashes(
    local_channel: Path, make_project, run_cema, store, host_site_packages
) -> None:
    folder = make_project(
        f"""\
        version: 1
        channels: ["{local_channel}"]
        environments:
          mixed:
            conda: [python, "cemademo=1.0"]
            pip: ["six==1.16.0"]
        """
    )
    host_before = host_site_packages()
    run_cema("sync", cwd=folder)
    (pip,) = next(iter(lock_doc(folder)["environments"]["mixed"]["platforms"].values()))["pip"]
    assert pip["name"] == "six" and pip["version"] == "1.16.0"
    assert pip["url"].startswith("https://") and pip["url"].endswith(".whl")
    assert len(pip["sha256"]) == 64

    prefix = cema.Project.load(folder, store=store).prefix("mixed")
    out = prefix_python(prefix, "import six, cemademo; print(six.__version__, six.__file__)")
    version, where = out.split()
    assert version == "1.16.0"
    assert where.startswith(str(prefix / "lib"))
    # the conda layer is still there, next to the pip layer
    assert prefix_python(prefix, "import cemademo; print(cemademo.__version__)") == "1.0"
    receipt = json.loads((prefix / RECEIPT_NAME).read_text())
    assert ["six", "1.16.0"] in receipt["pip"]
    # nothing landed in the host interpreter, nor in the venv running the tests
    assert host_site_packages() == host_before
    runner = subprocess.run(
        ["python", "-c", "import importlib.util as u; print(u.find_spec('cemademo'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert runner.stdout.strip() == "None"


def test_pip_layer_never_replaces_what_the_conda_layer_provides(
    local_channel: Path, conda_six_channel: Path, make_project, run_cema, store
) -> None:
    folder = make_project(
        f"""\
        version: 1
        channels: ["{local_channel}", "{conda_six_channel}"]
        environments:
          dateutil:
            conda: [python, six]
            pip: ["python-dateutil==2.9.0.post0"]
        """
    )
    run_cema("sync", cwd=folder)
    content = next(iter(lock_doc(folder)["environments"]["dateutil"]["platforms"].values()))
    assert [r["name"] for r in content["pip"]] == ["python-dateutil"]
    assert "six" in [r["name"] for r in content["conda"]]
    prefix = cema.Project.load(folder, store=store).prefix("dateutil")
    # the conda six is untouched by the pip layer (dateutil would have pulled in PyPI's)
    out = prefix_python(prefix, "import dateutil, six; print(six.FROM_CONDA, six.__version__)")
    assert out == "True 1.16.0"


def test_pip_only_env_is_a_venv_of_the_requested_python(make_project, run_cema, store) -> None:
    from cema.engines.uv import find_interpreter
    from cema.errors import EngineUnavailableError

    try:
        interpreter = find_interpreter("3.12", download=False)
    except EngineUnavailableError:
        pytest.skip("no Python 3.12 on this machine (pyenv or PATH)")
    folder = make_project(
        """\
        version: 1
        environments:
          tool:
            python: "3.12"
            pip: ["six==1.16.0"]
        """
    )
    start = time.monotonic()
    run_cema("lock", cwd=folder)
    lock_s = time.monotonic() - start
    # locking resolves for "3.12" by version: it never downloads an interpreter (that took 8 s)
    assert lock_s < 5.0, f"locking a one-package venv took {lock_s:.1f} s"
    locked = lock_doc(folder)["environments"]["tool"]
    assert locked["kind"] == "venv" and locked["python"] == "3.12"
    start = time.monotonic()
    run_cema("sync", cwd=folder)
    elapsed = time.monotonic() - start
    prefix = cema.Project.load(folder, store=store).prefix("tool")
    assert (prefix / "pyvenv.cfg").is_file()
    assert not (prefix / "conda-meta").exists()
    out = prefix_python(prefix, "import sys, six; print(sys.version_info[:2], six.__version__)")
    assert out == "(3, 12) 1.16.0"
    assert prefix_python(prefix, "import sys; print(sys.prefix)") == str(prefix)
    receipt = json.loads((prefix / RECEIPT_NAME).read_text())
    assert receipt["kind"] == "venv" and receipt["python"] == interpreter.version
    # a pip-only env is a fraction of a second of work: a generous bound, process start included
    assert elapsed < 5.0, f"sync of a one-package venv took {elapsed:.1f} s"
    assert run_cema("sync", cwd=folder).stdout.strip() == "1 environment(s) up to date."
