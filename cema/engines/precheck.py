"""What an env asks for, checked before resolving: conda match specs and its ``python`` request."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cema.engines.solver import match_spec_problem
from cema.errors import SpecError
from cema.model.spec import EnvSpec, version_request
from cema.model.validate import error_at, short

_CONDA_HINT = (
    'write it as conda does, e.g. "numpy>=1.26", "numpy 1.26.*", "numpy=1.26=*_0" or'
    ' "conda-forge::numpy".'
)
_PYTHON_HINT = 'write a version like "3.11" or a range like ">=3.10,<3.13".'


def check_env(env: EnvSpec, *, file: Path | None) -> None:
    """Raise ``SpecError`` at the entry's ``file:line`` for the first spec the solver cannot read.

    The schema only knows strings: without this, a bad spec fails in the middle of a solve (or
    in uv), without its place in ``cema.yaml``.
    """
    for i, dep in enumerate(env.conda):
        problem = match_spec_problem(dep.spec)
        if problem is not None:
            parts: list[str | int] = ["environments", env.name, "conda", i]
            if not dep.is_plain:
                parts.append("name")
            raise error_at(
                file,
                parts,
                f"{short(dep.spec)} is not a conda match spec ({problem})",
                hint=_CONDA_HINT,
            )
    if env.python is None:
        return
    where = ["environments", env.name, "python"]
    if env.resolved_kind == "venv":  # an interpreter found by version: PEP 440 specifiers
        try:
            version_request(env.python)
        except SpecError:
            raise error_at(
                file,
                where,
                f"{short(env.python)} is not a Python version constraint",
                hint=_PYTHON_HINT,
            ) from None
        return
    problem = match_spec_problem(f"python {env.python.strip()}")  # conda's python package
    if problem is not None:
        raise error_at(
            file,
            where,
            f"{short(env.python)} is not a Python version constraint ({problem})",
            hint=_PYTHON_HINT,
        )


def check_envs(envs: Iterable[EnvSpec], *, file: Path | None) -> None:
    """``check_env`` for each env, all before the first solve."""
    for env in envs:
        check_env(env, file=file)


__all__ = ["check_env", "check_envs"]
