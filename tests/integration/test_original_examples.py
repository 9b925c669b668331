"""The seed's examples (``examples/original/``), verbatim, run offline on a local channel.

Stand-ins replace what needs the network: ``cellpose`` 3.1.0 and ``numpy`` are tiny conda
packages of the local channel, ``numpy`` 2.2.4 a tiny wheel in a local folder (uv reads it with
``UV_FIND_LINKS``/``UV_NO_INDEX``), and ``requests`` a host module on ``PYTHONPATH`` and a conda
package that the ``cellpose`` stand-in depends on (an activated env does not see the host's
``PYTHONPATH``; the advanced example's module imports ``requests`` in the env).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests import channel_builder
from tests.channel_builder import Package, PackageFile

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "original"
RUN_TIMEOUT_S = 300

NUMPY = '''"""numpy stand-in: what the examples use."""

__version__ = "{version}"


class ndarray(list):
    @property
    def shape(self):
        return (len(self),)


def sum(x):
    total = 0
    for item in x:
        total += item
    return total
'''

CELLPOSE_MODELS = '''"""cellpose stand-in: a model whose eval finds one mask."""


class _CP:
    def __init__(self, model_type):
        self.model_type = model_type


class Cellpose:
    def __init__(self, gpu=False, model_type="cyto"):
        self.cp = _CP(model_type)

    def eval(self, image, channels=None, diameter=None):
        return [1] * len(image), [], [], float(diameter or 30)
'''

CELLPOSE_IO = '''"""cellpose stand-in: images are bytes."""

from pathlib import Path

import numpy as np


def imread(path):
    return np.ndarray(Path(path).read_bytes())


def save_masks(image, masks, flows, file_name, png=True):
    path = Path(file_name)
    (path.parent / (path.stem + "_cp_masks.png")).write_bytes(bytes(masks))
'''

REQUESTS = '''"""requests stand-in (no network in the tests): any URL answers a small image."""


class _Response:
    content = b"\\x89PNG stand-in image"


def get(url, **kwargs):
    return _Response()
'''


def _python_package(
    name: str, version: str, files: dict[str, str], depends: tuple[str, ...]
) -> Package:
    return Package(
        name=name,
        version=version,
        build="py_0",
        noarch="python",
        depends=("python", *depends),
        files=tuple(
            PackageFile(path=f"site-packages/{path}", content=text.encode())
            for path, text in files.items()
        ),
    )


def _wheel(folder: Path, name: str, version: str, module: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{name}/__init__.py", module)
        archive.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: cema-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture(scope="module")
def examples_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local channel plus ``numpy`` 2.2.4, ``requests`` and ``cellpose`` 3.1.0 stand-ins."""
    numpy = _python_package(
        "numpy", "2.2.4", {"numpy/__init__.py": NUMPY.format(version="2.2.4")}, ()
    )
    requests = _python_package("requests", "2.32.3", {"requests/__init__.py": REQUESTS}, ())
    cellpose = _python_package(
        "cellpose",
        "3.1.0",
        {
            "cellpose/__init__.py": '"""cellpose stand-in."""\n',
            "cellpose/models.py": CELLPOSE_MODELS,
            "cellpose/io.py": CELLPOSE_IO,
        },
        ("numpy", "requests"),
    )
    folder = tmp_path_factory.mktemp("examples-channel")
    return channel_builder.build_local_channel(folder, extra=[numpy, requests, cellpose])


@pytest.fixture
def workdir(tmp_path: Path, examples_channel: Path) -> Path:
    """A copy of ``examples/original`` whose ``micromamba/.mambarc`` names the local channel."""
    work = tmp_path / "examples"
    shutil.copytree(EXAMPLES, work)
    (work / "micromamba").mkdir()
    (work / "micromamba" / ".mambarc").write_text(f"channels:\n- {examples_channel}\n")
    (tmp_path / "stand-ins").mkdir()
    (tmp_path / "stand-ins" / "requests.py").write_text(REQUESTS)
    _wheel(tmp_path / "wheels", "numpy", "2.2.4", NUMPY.format(version="2.2.4"))
    return work


def run_example(workdir: Path, script: str) -> str:
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(workdir.parent / "stand-ins"), str(root)]),
        "UV_FIND_LINKS": str(workdir.parent / "wheels"),
        "UV_NO_INDEX": "1",
        "CEMA_HOME": str(workdir.parent / "cema-home"),
    }
    proc = subprocess.run(
        [sys.executable, script],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def test_the_examples_are_the_seeds_verbatim() -> None:
    names = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert names == [
        "advanced_example.py",
        "advanced_example_module.py",
        "example_module.py",
        "getting_started.py",
        "minimal_example.py",
        "minimal_module.py",
    ]
    assert (
        "from cema.environment_manager import EnvironmentManager"
        in (EXAMPLES / "getting_started.py").read_text()
    )


def test_minimal_example(workdir: Path) -> None:
    out = run_example(workdir, "minimal_example.py")
    assert "Sum of [1, 2, 3] is 6." in out
    assert (workdir / "micromamba" / "envs" / "numpy" / "conda-meta").is_dir()


def test_getting_started(workdir: Path) -> None:
    out = run_example(workdir, "getting_started.py")
    assert "[[1/4]] Load libraries and model cyto" in out  # the worker's prints reach the host
    assert "Found diameters of 30.0 pixels." in out
    assert (workdir / "cellpose_img02_segmentation.png").is_file()


def test_advanced_example(workdir: Path) -> None:
    out = run_example(workdir, "advanced_example.py")
    assert "Received response: {'message': 'Image downloaded.'}" in out
    assert "Object diameters: 30.0" in out
    assert (workdir / "cellpose_img02_segmentation.png").is_file()
