"""`cema export` and `cema import` through the CLI: formats other tools read, and round trips."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cema.interop.exporters import export_env
from cema.model.hashing import spec_hash
from cema.model.lock import CondaRecord, LockedEnv, LockedPlatform, Lockfile, PipRecord
from cema.model.lockio import read_lock, write_lock
from cema.model.spec import current_platform, load_project

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

COW = PipRecord(
    name="cowsay",
    version="6.1",
    url="https://files.pythonhosted.org/packages/f1/13/63c0a02c44024ee16f664e0b36eefeb22d54e93531630bd99e237986f534/cowsay-6.1-py3-none-any.whl",
    sha256="274b1e6fc1b966d53976333eb90ac94cb07a450a700b455af9fbdf882244b30a",
)
SIX = PipRecord(
    name="Six",
    version="1.16.0",
    url="https://files.pythonhosted.org/packages/71/39/171f1c67cd00715f190ba0b100d606d440a28c93c7714febeca8b79af85e/six-1.16.0.tar.gz",
    sha256="1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926",
)


def conda_records(folder: Path, env: str, platform: str = "linux-64") -> list[tuple[str, ...]]:
    """(name, version, build, sha256, url file name) of the env's locked conda packages."""
    content = read_lock(folder / "cema.lock").env(env).platforms[platform]
    return sorted((r.name, r.version, r.build, r.sha256, r.file_name) for r in content.conda)


@pytest.fixture
def locked_xz(conda_forge_channel: Path, make_project, run_cema) -> Path:
    """A project locked against the real conda-forge archives: xz and an older openssl."""
    folder = make_project(
        f"""\
        version: 1
        channels: ["{conda_forge_channel}"]
        platforms: [linux-64]
        environments:
          tools:
            conda: [xz, "openssl=3.2.1"]
            variables: {{OMP_NUM_THREADS: "1"}}
        """
    )
    run_cema("lock", cwd=folder)
    return folder


# --- export: conda formats ------------------------------------------------------------------


@pytest.mark.shared
def test_export_explicit_lists_every_url_with_its_sha256(locked_xz: Path, run_cema) -> None:
    out = run_cema("export", "--format", "explicit", cwd=locked_xz).stdout
    lines = [line for line in out.splitlines() if not line.startswith("#")]
    assert lines[0] == "@EXPLICIT"
    content = read_lock(locked_xz / "cema.lock").env("tools").platforms["linux-64"]
    assert lines[1:] == [f"{r.url}#sha256:{r.sha256}" for r in content.conda]
    assert all(line.startswith("file://") for line in lines[1:])  # local channels made absolute


@pytest.mark.shared
def test_environment_yml_round_trip_locks_the_same_records(
    locked_xz: Path, tmp_path: Path, run_cema
) -> None:
    target = tmp_path / "out" / "environment.yml"
    target.parent.mkdir()
    run_cema("export", "-e", "tools", "-f", "environment-yml", "-o", target, cwd=locked_xz)
    doc = yaml.safe_load(target.read_text())
    assert doc["name"] == "tools"
    assert "xz=5.2.6=h166bdaf_0" in doc["dependencies"]
    assert "openssl=3.2.1=hd590300_1" in doc["dependencies"]
    assert doc["variables"] == {"OMP_NUM_THREADS": "1"}

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    out = run_cema("import", target, cwd=fresh)
    assert "wrote" in out.stdout
    spec = load_project(fresh / "cema.yaml")
    assert spec.env("tools").variables == (("OMP_NUM_THREADS", "1"),)
    run_cema("lock", cwd=fresh)
    assert conda_records(fresh, "tools") == conda_records(locked_xz, "tools")


@pytest.mark.shared
def test_conda_lock_export_is_read_by_conda_lock_and_round_trips(
    locked_xz: Path, tmp_path: Path, run_cema
) -> None:
    from conda_lock.lockfile import parse_conda_lock_file

    target = tmp_path / "conda-lock.yml"
    run_cema("export", "--format", "conda-lock", "-o", target, cwd=locked_xz)
    parsed = parse_conda_lock_file(target)
    assert parsed.metadata.platforms == ["linux-64"]
    content = read_lock(locked_xz / "cema.lock").env("tools").platforms["linux-64"]
    assert sorted(
        (p.name, p.version, p.hash.sha256, p.hash.md5, p.url) for p in parsed.package
    ) == (sorted((r.name, r.version, r.sha256, r.md5, r.url) for r in content.conda))
    # conda-lock's own CLI renders it (what `conda-lock install` does before installing)
    tool = Path(sys.executable).parent / "conda-lock"
    if tool.exists():
        subprocess.run(
            [tool, "render", "--kind", "explicit", "-p", "linux-64", target],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            timeout=300,
        )
        rendered = (tmp_path / "conda-linux-64.lock").read_text()
        assert "@EXPLICIT" in rendered
        assert all(r.url in rendered for r in content.conda)

    # import it next to an existing env, under another name, then lock the same records
    run_cema("import", target, "--env", "pinned", cwd=locked_xz)
    spec = load_project(locked_xz / "cema.yaml")
    assert sorted(spec.environments) == ["pinned", "tools"]
    assert "xz==5.2.6=h166bdaf_0" in [d.spec for d in spec.env("pinned").conda]
    run_cema("lock", cwd=locked_xz)
    assert conda_records(locked_xz, "pinned") == conda_records(locked_xz, "tools")


@pytest.mark.shared
def test_export_names_what_is_missing(locked_xz: Path, run_cema) -> None:
    proc = run_cema("export", "-f", "requirements", cwd=locked_xz, check=False)
    assert proc.returncode == 1
    assert "error: environment 'tools' has no pip packages on linux-64" in proc.stderr
    assert "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cema(
        "export", "-f", "explicit", "--platform", "osx-arm64", cwd=locked_xz, check=False
    )
    assert proc.returncode == 1
    assert "not locked for osx-arm64 (locked: linux-64)" in proc.stderr
    proc = run_cema("export", "-f", "explicit", "-e", "nope", cwd=locked_xz, check=False)
    assert proc.returncode == 1
    assert "'nope'" in proc.stderr


# --- export: the pip layer ------------------------------------------------------------------


@pytest.fixture
def pip_project(make_project) -> Path:
    """A venv project whose lock (written by the library, no network) holds two PyPI files."""
    folder = make_project(
        f"""\
        version: 1
        platforms: [{current_platform()}]
        environments:
          cow:
            python: "3.11"
            pip: ["cowsay==6.1", "six==1.16.0"]
        """
    )
    spec = load_project(folder / "cema.yaml").env("cow")
    content = LockedPlatform(platform=current_platform(), kind="venv", pip=[COW, SIX])
    env = LockedEnv(
        name="cow",
        spec_hash=spec_hash(spec),
        kind="venv",
        python="3.11",
        platforms={current_platform(): content},
    )
    write_lock(Lockfile(path=folder / "cema.lock", envs={"cow": env}))
    return folder


def test_requirements_export_has_a_hash_on_every_line(pip_project: Path, run_cema) -> None:
    out = run_cema("export", "--format", "requirements", cwd=pip_project).stdout
    body = [line for line in out.splitlines() if not line.startswith("#")]
    assert body == [  # in the lock's order
        "Six==1.16.0 \\",
        f"    --hash=sha256:{SIX.sha256}",
        "cowsay==6.1 \\",
        f"    --hash=sha256:{COW.sha256}",
    ]
    # the file reads back as the same pins
    requirements = pip_project / "requirements.txt"
    requirements.write_text(out)
    fresh = pip_project.parent / "again"
    fresh.mkdir()
    run_cema("import", requirements, "--env", "cow", cwd=fresh)
    assert [d.spec for d in load_project(fresh).env("cow").pip] == ["Six==1.16.0", "cowsay==6.1"]


def test_pylock_export_is_a_valid_pep_751_file(pip_project: Path, run_cema) -> None:
    target = pip_project / "pylock.toml"
    run_cema("export", "--format", "pylock", "-o", target, cwd=pip_project)
    doc = tomllib.loads(target.read_text())
    assert doc["lock-version"] == "1.0"
    assert doc["created-by"] == "cema"
    by_name = {p["name"]: p for p in doc["packages"]}
    assert by_name["cowsay"]["wheels"][0]["hashes"] == {"sha256": COW.sha256}
    assert by_name["six"]["sdist"]["url"] == SIX.url  # names are normalised (PEP 503)
    from packaging import pylock

    lock = pylock.Pylock.from_dict(doc)
    lock.validate()
    assert sorted(p.name for p in lock.packages) == ["cowsay", "six"]


def test_exports_never_write_credentials(tmp_path: Path) -> None:
    secret_conda = "https://user:hunter2@conda.example.org/t/abcdefghijklmnopqrstuvwxyz123456/main"
    record = CondaRecord(
        name="tool",
        version="1.0",
        build="0",
        build_number=0,
        subdir="linux-64",
        channel=secret_conda,
        url=f"{secret_conda}/linux-64/tool-1.0-0.conda",
        sha256="a" * 64,
        md5="b" * 32,
        depends=("libfoo >=1",),
    )
    wheel = PipRecord(
        name="private",
        version="2.0",
        url="https://deploy:hunter2@pypi.example.org/files/private-2.0-py3-none-any.whl",
        sha256="c" * 64,
    )
    content = LockedPlatform(platform="linux-64", kind="conda", conda=[record], pip=[wheel])
    env = LockedEnv(name="x", spec_hash="0" * 16, kind="conda", platforms={"linux-64": content})
    lock = Lockfile(path=tmp_path / "cema.lock", envs={"x": env})
    for fmt in ("explicit", "environment-yml", "conda-lock", "requirements", "pylock"):
        text = export_env(lock, fmt, platform="linux-64")
        assert "hunter2" not in text, fmt
        assert "abcdefghijklmnopqrstuvwxyz123456" not in text, fmt
        assert "conda.example.org" in text or "pypi.example.org" in text, fmt


# --- import ---------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_import_requirements_follows_includes_comments_and_markers(
    tmp_path: Path, run_cema
) -> None:
    write(tmp_path / "src" / "base.txt", "six==1.16.0  # pinned\n")
    source = write(
        tmp_path / "src" / "requirements.txt",
        """\
        # the tools
        -r base.txt
        cowsay==6.1 \\
            --hash=sha256:274b1e6fc1b966d53976333eb90ac94cb07a450a700b455af9fbdf882244b30a
        colorama>=0.4; sys_platform == "win32"

        --require-hashes
        """,
    )
    project = tmp_path / "project"
    project.mkdir()
    proc = run_cema("import", source, cwd=project)
    env = load_project(project / "cema.yaml").env("default")
    assert [d.spec for d in env.pip] == [
        "six==1.16.0",
        "cowsay==6.1",
        'colorama>=0.4; sys_platform == "win32"',
    ]
    assert env.resolved_kind == "venv"
    assert "note:" in proc.stderr  # what was left out is said


def test_import_pixi_maps_features_and_environments(tmp_path: Path, run_cema) -> None:
    source = write(
        tmp_path / "pixi.toml",
        """\
        [workspace]
        name = "demo"
        channels = ["conda-forge"]
        platforms = ["linux-64", "osx-arm64"]

        [dependencies]
        python = "3.11.*"
        numpy = { version = ">=1.26", channel = "conda-forge" }

        [pypi-dependencies]
        requests = ">=2.31"
        rich = { version = ">=13", extras = ["jupyter"] }

        [target.linux-64.dependencies]
        libtiff = "*"

        [activation.env]
        OMP_NUM_THREADS = "1"

        [feature.test.dependencies]
        pytest = "*"

        [feature.test.pypi-dependencies]
        hypothesis = "==6.100.0"

        [feature.lint]
        platforms = ["linux-64"]
        dependencies = { ruff = ">=0.6" }

        [environments]
        test = ["test"]
        lint = { features = ["lint"], no-default-feature = true }
        """,
    )
    project = tmp_path / "project"
    project.mkdir()
    run_cema("import", source, cwd=project)
    spec = load_project(project / "cema.yaml")
    assert sorted(spec.environments) == ["default", "lint", "test"]
    assert spec.platforms == ("linux-64", "osx-arm64")
    default = spec.env("default")
    assert [d.to_data() for d in default.conda] == [
        {"name": "libtiff", "platforms": ["linux-64"]},
        "conda-forge::numpy >=1.26",
        "python 3.11.*",
    ]
    assert [d.spec for d in default.pip] == ["requests>=2.31", "rich[jupyter]>=13"]
    assert default.variables == (("OMP_NUM_THREADS", "1"),)
    test = spec.env("test")
    assert "pytest" in [d.spec for d in test.conda]
    assert "hypothesis==6.100.0" in [d.spec for d in test.pip]
    lint = spec.env("lint")
    assert [d.spec for d in lint.conda] == ["ruff >=0.6"]
    assert lint.platforms == ("linux-64",)


def test_import_pyproject_tool_pixi(tmp_path: Path, run_cema) -> None:
    source = write(
        tmp_path / "pyproject.toml",
        """\
        [project]
        name = "demo"
        dependencies = ["attrs>=23"]

        [tool.pixi.workspace]
        channels = ["conda-forge"]
        platforms = ["linux-64"]

        [tool.pixi.dependencies]
        python = ">=3.10"
        """,
    )
    run_cema("import", source, "--env", "demo", cwd=tmp_path)
    env = load_project(tmp_path / "cema.yaml").env("demo")
    assert [d.spec for d in env.conda] == ["python >=3.10"]
    assert [d.spec for d in env.pip] == ["attrs>=23"]
    proc = run_cema(
        "import",
        write(tmp_path / "x" / "pyproject.toml", "[project]\nname='y'\n"),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1
    assert "no [tool.pixi] table" in proc.stderr


def test_import_extends_cema_yaml_keeping_comments_and_refuses_a_clash(
    tmp_path: Path, make_project, run_cema
) -> None:
    folder = make_project(
        """\
        # my project
        version: 1
        channels: [conda-forge]
        environments:
          base:   # the first one
            conda: [xz]
        store: ./store   # after the envs
        """
    )
    source = write(
        tmp_path / "environment.yml",
        """\
        name: base
        channels: [conda-forge, bioconda]
        dependencies:
          - samtools=1.20
          - pip
          - pip:
            - six==1.16.0
        """,
    )
    proc = run_cema("import", source, cwd=folder, check=False)
    assert proc.returncode == 1
    assert "environment 'base' is already declared" in proc.stderr
    assert "--env" in proc.stderr
    before = (folder / "cema.yaml").read_text()

    run_cema("import", source, "--env", "bio", cwd=folder)
    text = (folder / "cema.yaml").read_text()
    assert text.startswith(before.split("store:")[0])  # nothing above the new env moved
    assert "# my project" in text and "# the first one" in text and "# after the envs" in text
    spec = load_project(folder / "cema.yaml")
    assert spec.store == "./store"
    bio = spec.env("bio")
    assert bio.channels == ("conda-forge", "bioconda")
    assert [d.spec for d in bio.conda] == ["samtools=1.20", "pip"]
    assert [d.spec for d in bio.pip] == ["six==1.16.0"]


def test_import_of_a_bad_file_says_where_and_writes_nothing(tmp_path: Path, run_cema) -> None:
    source = write(
        tmp_path / "environment.yml",
        """\
        name: broken
        dependencies:
          - xz
          - pip:
            - "not a requirement!!"
        """,
    )
    proc = run_cema("import", source, cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert f"error: {source}:5: 'not a requirement!!' is not a pip requirement" in proc.stderr
    assert "hint:" in proc.stderr
    assert not (tmp_path / "cema.yaml").exists()

    bad_name = write(tmp_path / "other.yml", "name: 'a/b'\ndependencies: [xz]\n")
    proc = run_cema("import", bad_name, cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "cema.yaml").exists()


def test_import_rebases_relative_channel_paths(tmp_path: Path, run_cema) -> None:
    (tmp_path / "src" / "channel").mkdir(parents=True)
    source = write(
        tmp_path / "src" / "environment.yml",
        "name: local\nchannels: [./channel]\ndependencies: [xz]\n",
    )
    project = tmp_path / "project"
    project.mkdir()
    run_cema("import", source, cwd=project)
    spec = load_project(project / "cema.yaml")
    assert spec.env("local").channels == ("../src/channel",)
    shutil.rmtree(project)
