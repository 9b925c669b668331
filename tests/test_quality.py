"""Repository-wide checks: ruff lint and format, mypy --strict, docstrings, layers, the lock."""

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


def test_ruff_format_is_clean() -> None:
    proc = run("ruff", "format", "--check", "cema", "tests", "bench", "examples")
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
    from cema.model.lock import check_fresh
    from cema.model.lockio import read_lock
    from cema.model.spec import load_project

    example = (ROOT / "cema.lock.example").read_text()
    assert example == (ROOT / "examples" / "cema.lock").read_text()
    project = load_project(ROOT / "examples" / "cema.yaml")
    check_fresh(project, read_lock(ROOT / "cema.lock.example"))


@pytest.mark.parametrize("schema", ["cema.schema.json", "cema-lock.schema.json"])
def test_packaged_schemas_are_the_published_ones(schema: str) -> None:
    from importlib import resources

    packaged = resources.files("cema").joinpath(f"schemas/{schema}").read_text("utf-8")
    assert packaged == (ROOT / "specs" / schema).read_text()


# --- the house: imports point down the flow, no cycles, short modules ------------------------

#: layers from the bottom up; a module may import its own layer or lower ones only
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cema.errors", "cema._version"),
    # model.urls is stdlib-only text handling: _proc redacts with it
    ("cema._fs", "cema._proc", "cema._paths", "cema._internal.protocol", "cema.model.urls"),
    ("cema.model",),
    # other tools' files, from and to the model (no store, no engine)
    ("cema.interop",),
    ("cema.store", "cema.verify", "cema.stamp"),
    ("cema.activation", "cema.shellhook"),
    ("cema.engines", "cema.runtime"),
    ("cema.resolve", "cema.sync"),
    ("cema.project",),
    ("cema.environment",),
    ("cema.manager", "cema.dask", "cema.ray"),
    ("cema.cli", "cema.__main__", "cema"),
)
MAX_MODULE_LINES = 450


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    best, rank = -1, -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} is in no layer of tests/test_quality.py LAYERS"
    return rank


def _cema_imports(path: Path) -> set[str]:
    """Modules of cema that ``path`` imports (at any depth, not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cema"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cema"):
            # `from cema.model import spec` imports the submodule cema.model.spec
            package = ROOT / Path(*node.module.split("."))
            for alias in node.names:
                sub = package / alias.name
                if sub.with_suffix(".py").exists() or (sub / "__init__.py").exists():
                    found.add(f"{node.module}.{alias.name}")
                else:
                    found.add(node.module)
    return found


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / "cema").rglob("*.py"))}


def test_imports_point_down_the_layers() -> None:
    upward = []
    for name, path in _modules().items():
        for target in _cema_imports(path):
            if _layer(target) > _layer(name):
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_no_import_cycles() -> None:
    modules = _modules()
    # a package's __init__ re-exporting its own submodules is not a cycle between concepts
    graph = {
        name: {
            t
            for t in _cema_imports(path)
            if t in modules
            and t != name
            and not (path.name == "__init__.py" and t.startswith(name))
        }
        for name, path in modules.items()
    }
    cycles = set()
    for start in graph:
        stack = [(start, (start,))]
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.add(" -> ".join(sorted(trail)))
                elif nxt not in trail:
                    stack.append((nxt, (*trail, nxt)))
    assert sorted(cycles) == []


def test_modules_stay_short() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "cema").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_design_lists_every_module() -> None:
    design = (ROOT / "DESIGN.md").read_text()
    missing = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "cema").rglob("*.py"))
        if str(p.relative_to(ROOT / "cema")) not in design and p.name != "__init__.py"
    ]
    assert missing == []


def test_version_imports_nothing_heavy() -> None:
    code = (
        "import sys; sys.argv = ['cema', '--version']\n"
        "from cema.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(out.stdout.split())
    heavy = {"rattler", "yaml", "jsonschema", "xxhash", "filelock", "packaging", "requests"}
    assert loaded & heavy == set()
    ours = {m for m in loaded if m.startswith("cema")}
    assert ours <= {"cema", "cema._version", "cema.cli", "cema.errors"}
