"""Repository-wide checks: ruff, mypy --strict, module docstrings, and the example lock."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_is_clean() -> None:
    proc = run("ruff", "check", "cema", "tests", "bench", "examples")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_is_clean() -> None:
    proc = run("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_module_has_a_one_line_docstring() -> None:
    missing = []
    for path in sorted((ROOT / "cema").rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if not doc or "\n" in doc.strip():
            missing.append(str(path.relative_to(ROOT)))
    assert missing == []


def test_example_lock_is_the_lock_of_the_example_spec() -> None:
    from cema.lock import check_fresh, read_lock
    from cema.spec import load_project

    example = (ROOT / "cema.lock.example").read_text()
    assert example == (ROOT / "examples" / "cema.lock").read_text()
    project = load_project(ROOT / "examples" / "cema.yaml")
    check_fresh(project, read_lock(ROOT / "cema.lock.example"))


@pytest.mark.parametrize("schema", ["cema.schema.json", "cema-lock.schema.json"])
def test_packaged_schemas_are_the_published_ones(schema: str) -> None:
    from importlib import resources

    packaged = resources.files("cema").joinpath(f"schemas/{schema}").read_text("utf-8")
    assert packaged == (ROOT / "specs" / schema).read_text()
