"""Fixtures for the micromamba engine tests: the test double, or a real micromamba on PATH."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.micromamba_double.fake_micromamba import write_executable


@pytest.fixture(scope="session")
def micromamba_double(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``.../micromamba``: the TEST DOUBLE (tests/micromamba_double), never a real micromamba."""
    return write_executable(tmp_path_factory.mktemp("micromamba-double"))


@pytest.fixture(params=["double", "real"])
def micromamba(request: pytest.FixtureRequest, micromamba_double: Path) -> Path:
    """The micromamba the scripts run: the test double, then a real one (skipped if absent)."""
    if request.param == "double":
        return micromamba_double
    found = shutil.which("micromamba")
    if found is None:
        pytest.skip("no real micromamba on PATH (the same test ran against the test double)")
    return Path(found)
