"""Fixtures for the worker runtime tests (registered through ``pytest_plugins``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cema.runtime import Worker
from tests.integration.conftest_runtime import MATRIX_VERSIONS, StartWorker, make_venv, worker_env


@pytest.fixture(scope="session")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``venv_python("3.12")``: the python of a venv made once per session from that version."""
    made: dict[str, Path] = {}

    def get(version: str) -> Path:
        if version not in made:
            made[version] = make_venv(tmp_path_factory.mktemp(f"venv-{version}"), version)
        return made[version]

    return get


@pytest.fixture(scope="session")
def numpy_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3.12 venv with numpy (from the package index)."""
    pytest.importorskip("numpy")
    return make_venv(tmp_path_factory.mktemp("venv-numpy"), "3.12", "numpy")


@pytest.fixture
def start_worker() -> Iterator[StartWorker]:
    """``start_worker(python, name=..., **start_kwargs)``; every worker is closed afterwards."""
    workers: list[Worker] = []

    def start(
        python: Path,
        *,
        name: str = "test",
        extra_env: dict[str, str] | None = None,
        **kwargs: object,
    ) -> Worker:
        worker = Worker.start(python=python, env=worker_env(python, extra_env), name=name, **kwargs)  # type: ignore[arg-type]
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.close()


@pytest.fixture(params=MATRIX_VERSIONS)
def worker(
    request: pytest.FixtureRequest, venv_python: Callable[[str], Path], start_worker: StartWorker
) -> Worker:
    """A worker in a venv of each matrix version."""
    return start_worker(venv_python(request.param), name=f"py{request.param}")
