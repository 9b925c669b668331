"""A spec the solver cannot read fails before resolving, at its line; other tools' files and
packages no channel has are named as such (issue #14), through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_core_bad_input import assert_nothing_built, assert_user_error


def _spec(channel: Path, body: str) -> str:
    """A ``cema.yaml`` of one env ``demo`` whose lines are ``body`` (indented 4 spaces)."""
    return f'version: 1\nchannels: ["{channel}"]\nenvironments:\n  demo:\n{body}\n'


# --- another tool's file saved as cema.yaml ----------------------------------------------------


def test_an_environment_yml_as_cema_yaml_names_cema_import(make_project, run_cema) -> None:
    folder = make_project(
        """\
        name: analysis
        channels: [conda-forge]
        dependencies:
          - numpy
        """
    )
    proc = run_cema("lock", cwd=folder, check=False)
    assert_user_error(proc, "cema.yaml:3", "environment.yml", "cema import environment.yml")
    assert "unknown key" not in proc.stderr


def test_a_requirements_file_as_cema_yaml_names_cema_import(make_project, run_cema) -> None:
    folder = make_project("# pinned\nnumpy>=1.26\nrequests\n")
    proc = run_cema("sync", cwd=folder, check=False)
    assert_user_error(proc, "cema.yaml:2", "requirements file", "cema import requirements.txt")


# --- specs checked before any solve --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where", "fragment"),
    [
        ('    conda: [python, "cemademo>>1"]', ":5, at environments.demo.conda[1]", ">>1"),
        (
            '    conda:\n      - python\n      - {name: "cemademo>>1", dependencies: false}',
            ":7, at environments.demo.conda[1].name",
            "not a conda match spec",
        ),
        (
            '    python: ">>3"\n    conda: [cemademo]',
            ":5, at environments.demo.python",
            "not a Python version constraint",
        ),
    ],
    ids=["conda-entry", "conda-entry-with-options", "python-of-a-conda-env"],
)
def test_a_bad_conda_spec_fails_at_its_line_before_solving(
    body: str, where: str, fragment: str, local_channel: Path, make_project, run_cema, store
) -> None:
    # a second env that would need a solve first: the check comes before every solve
    text = _spec(local_channel, body) + "  aaa:\n    conda: [no-such-package]\n"
    folder = make_project(text)
    proc = run_cema("sync", cwd=folder, check=False)
    assert_user_error(proc, f"cema.yaml{where}", fragment, "write ")
    assert "cannot be resolved" not in proc.stderr
    assert not (folder / "cema.lock").exists()
    assert_nothing_built(store)


def test_a_bad_python_request_of_a_venv_fails_at_its_line(make_project, run_cema) -> None:
    folder = make_project(
        """\
        version: 1
        environments:
          tools:
            python: "3.1x"
            pip: [six]
        """
    )
    proc = run_cema("lock", cwd=folder, check=False)
    assert_user_error(proc, "cema.yaml:4, at environments.tools.python", "'3.1x'", '"3.11"')


# --- a package no channel has -------------------------------------------------------------------


def test_a_misspelt_package_is_named_with_the_closest_one(
    local_channel: Path, make_project, run_cema
) -> None:
    folder = make_project(_spec(local_channel, "    conda: [python, cemademoo]"))
    proc = run_cema("lock", cwd=folder, check=False)
    assert_user_error(
        proc, f"no package named 'cemademoo' in {local_channel}", "did you mean 'cemademo'?"
    )
    assert "loosen" not in proc.stderr
    assert "No candidates" not in proc.stderr


def test_an_unknown_package_names_the_channels(local_channel: Path, make_project, run_cema) -> None:
    folder = make_project(_spec(local_channel, '    conda: [python, "zzqx>=1"]'))
    proc = run_cema("lock", cwd=folder, check=False)
    assert_user_error(
        proc, "no package named 'zzqx'", "asked as 'zzqx >=1'", "add that channel to `channels:`"
    )


def test_a_version_no_channel_has_still_says_which_spec(
    local_channel: Path, make_project, run_cema
) -> None:
    folder = make_project(_spec(local_channel, '    conda: [python, "cemademo>5"]'))
    proc = run_cema("lock", cwd=folder, check=False)
    assert_user_error(proc, "cemademo", "cannot be resolved")
    assert "no package named" not in proc.stderr


def test_a_missing_virtual_package_is_not_called_a_missing_package(
    local_channel: Path, make_project, run_cema
) -> None:
    # a virtual package (`__cuda`) is never in a channel: the machine lacks it, and the solver
    # says so; "no package named '__cuda'" would send the user looking in the wrong place
    folder = make_project(_spec(local_channel, '    conda: [python, "__cuda>=99"]'))
    proc = run_cema("lock", cwd=folder, check=False, env={"CONDA_OVERRIDE_CUDA": ""})
    assert proc.returncode == 1
    assert proc.stderr.startswith("error:")
    assert "no package named" not in proc.stderr
