"""Unit tests of cema.yaml loading and validation: every error names file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cema.errors import EnvNotFoundError, SpecError
from cema.model.spec import current_platform, env_from_dict, load_project, project_from_dict


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cema.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_full_project_is_loaded_with_defaults_applied(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        channels: [conda-forge, ./local]
        platforms: [linux-64, osx-arm64]
        environments:
          gpu:
            python: "3.11"
            conda: ["numpy>=1.26"]
            pip: [requests]
            platforms: [linux-64]
            variables: {OMP_NUM_THREADS: 1, DEBUG: true}
          tools:
            pip: [cowsay]
        """,
    )
    project = load_project(path)
    gpu = project.env("gpu")
    assert [d.spec for d in gpu.conda] == ["numpy>=1.26"]
    assert gpu.channels == ("conda-forge", "./local")
    assert gpu.platforms == ("linux-64",)
    assert dict(gpu.variables) == {"OMP_NUM_THREADS": "1", "DEBUG": "1"}
    assert gpu.resolved_kind == "conda"
    tools = project.env("tools")
    assert tools.platforms == ("linux-64", "osx-arm64")
    assert tools.resolved_kind == "venv"


def test_pip_only_env_with_own_channels_is_conda(tmp_path: Path) -> None:
    env = env_from_dict("x", {"pip": ["six"], "channels": ["conda-forge"]})
    assert env.resolved_kind == "conda"
    assert env_from_dict("y", {"pip": ["six"], "kind": "conda"}).resolved_kind == "conda"
    assert env_from_dict("z", {"pip": ["six"]}).resolved_kind == "venv"


def test_original_dict_shape_is_accepted() -> None:
    env = env_from_dict("numpy_env", {"python": "3.11", "conda": ["xz"], "pip": ["numpy==2.2.4"]})
    assert env.python == "3.11"
    assert [d.spec for d in env.pip] == ["numpy==2.2.4"]
    assert env.platforms == (current_platform(),)


def test_typo_key_names_path_line_and_suggests(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        environments:
          gpu:
            python: "3.11"
            pipp: [requests]
        """,
    )
    with pytest.raises(SpecError) as info:
        load_project(path)
    err = info.value
    assert err.key == "environments.gpu.pipp"
    assert err.line == 5
    assert str(path) in str(err)
    assert err.hint is not None and "'pip'" in err.hint


def test_wrong_type_in_list_points_at_item(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        environments:
          gpu:
            pip:
              - requests
              - six
              - {nme: bad}
        """,
    )
    with pytest.raises(SpecError) as info:
        load_project(path)
    assert info.value.key == "environments.gpu.pip[2]"
    assert info.value.line == 7
    assert info.value.hint is not None and "name" in info.value.hint


def test_unquoted_python_version_gets_quoting_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nenvironments:\n  a:\n    python: 3.10\n")
    with pytest.raises(SpecError) as info:
        load_project(path)
    assert info.value.key == "environments.a.python"
    assert info.value.hint is not None and 'python: "3.10"' in info.value.hint


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "..", ".hidden", "x..y", ""])
def test_unsafe_env_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SpecError) as info:
        project_from_dict({"version": 1, "environments": {name: {"pip": ["six"]}}})
    assert "not a valid environment name" in str(info.value)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nenvironments:\n  a:\n    pip: [six\n  b: {}\n")
    with pytest.raises(SpecError) as info:
        load_project(path)
    assert "not valid YAML" in str(info.value)
    assert info.value.line is not None and info.value.line >= 4


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nenvironments:\n  a: {}\n  a: {}\n")
    with pytest.raises(SpecError) as info:
        load_project(path)
    assert info.value.line == 4
    assert "appears twice" in str(info.value)


def test_unknown_platform_suggests_closest() -> None:
    with pytest.raises(SpecError) as info:
        project_from_dict({"version": 1, "platforms": ["linux64"], "environments": {}})
    assert info.value.hint == "did you mean 'linux-64'?"


def test_wrong_format_version() -> None:
    with pytest.raises(SpecError) as info:
        project_from_dict({"version": 2, "environments": {}})
    assert info.value.key == "version"


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_project(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="empty"):
        load_project(write(tmp_path, ""))


def test_unknown_env_suggests_closest() -> None:
    project = project_from_dict({"version": 1, "environments": {"tools": {}}})
    with pytest.raises(EnvNotFoundError) as info:
        project.env("tool")
    assert info.value.hint == "did you mean 'tools'?"


def test_schema_file_is_valid_2020_12() -> None:
    import json

    import jsonschema

    root = Path(__file__).resolve().parents[2] / "specs"
    for name in ("cema.schema.json", "cema-lock.schema.json"):
        schema = json.loads((root / name).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"].endswith("2020-12/schema")


def test_invalid_pip_requirement_names_the_item(tmp_path: Path) -> None:
    path = write(
        tmp_path, "version: 1\nenvironments:\n  a:\n    pip:\n      - six\n      - 'numpy=>1'\n"
    )
    with pytest.raises(SpecError) as info:
        load_project(path)
    assert info.value.key == "environments.a.pip[1]"
    assert info.value.line == 6
    assert "not a valid pip requirement" in str(info.value)


def test_venv_with_conda_dependencies_is_refused() -> None:
    with pytest.raises(SpecError, match="a venv cannot have conda dependencies") as info:
        project_from_dict({"version": 1, "environments": {"a": {"kind": "venv", "conda": ["xz"]}}})
    assert info.value.key == "environments.a.kind"


def test_dependency_entries_with_options(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        platforms: [linux-64, osx-arm64, win-64]
        environments:
          fiji:
            python: "3.11"
            conda:
              - conda-forge::pyimagej==1.5.0
              - {name: openjdk=11, platforms: [win-64, osx-arm64]}
              - {name: napari, dependencies: false}
              - {name: not-on-any-channel, optional: true}
            pip:
              - {name: six, platforms: [linux-64], dependencies: false}
            install_commands:
              all: ["echo hi > hi.txt"]
              windows: ["echo win"]
        """,
    )
    env = load_project(path).env("fiji")
    assert [d.spec for d in env.conda_for("linux-64")] == [
        "conda-forge::pyimagej==1.5.0",
        "napari",
        "not-on-any-channel",
    ]
    assert len(env.conda_for("win-64")) == 4
    (napari,) = [d for d in env.conda if d.spec == "napari"]
    assert not napari.dependencies and not napari.optional
    assert env.pip_for("osx-arm64") == ()
    assert env.commands_for("linux-64") == ("echo hi > hi.txt",)
    assert env.commands_for("win-64") == ("echo hi > hi.txt", "echo win")


def test_dump_round_trips_entries(tmp_path: Path) -> None:
    import yaml

    from cema.model.spec import dump_project

    data = {
        "version": 1,
        "platforms": ["linux-64"],
        "environments": {
            "a": {
                "conda": ["xz", {"name": "zlib", "dependencies": False, "optional": True}],
                "install_commands": {"all": ["true"]},
            }
        },
    }
    project = project_from_dict(data)
    again = project_from_dict(yaml.safe_load(dump_project(project)))
    assert again.environments == project.environments
