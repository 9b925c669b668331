"""A pip-only env keeps the python it was locked for while its `python:` allows that series."""

from __future__ import annotations

import pytest

from cema import resolve
from cema.model.spec import env_from_dict


def test_a_locked_series_is_kept_under_a_lower_bound_with_a_patch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def search(*args: object, **kwargs: object) -> object:
        raise AssertionError("the locked series should have been kept, not searched for again")

    monkeypatch.setattr(resolve.uv, "find_interpreter", search)
    env = env_from_dict("tools", {"python": ">=3.11.4,<3.13", "pip": ["cowsay"]})
    # 3.11 means any 3.11.x: 3.11.4 and later are allowed, so the locked series stays
    assert resolve.venv_python_version(env, kept="3.11") == "3.11"
    assert resolve.venv_python_version(env, kept="3.12") == "3.12"
