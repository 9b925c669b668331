"""Golden values of the spec hash and content hash: a change here changes every user's prefixes."""

from __future__ import annotations

import pytest

from cema.model.hashing import (
    HASH_SCHEME,
    content_hash,
    normalize_conda_spec,
    normalize_pip_requirement,
    spec_hash,
)
from cema.model.spec import env_from_dict

XZ = {
    "name": "xz",
    "version": "5.2.6",
    "build": "h166bdaf_0",
    "subdir": "linux-64",
    "sha256": "03a6d28ded42af8a347345f82f3eebdd6807a08526d47899a42d62d319609162",
}
SIX = {
    "name": "Six",
    "version": "1.16.0",
    "sha256": "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254",
}


def env(**body: object):  # type: ignore[no-untyped-def]
    return env_from_dict("a", body, platforms=["linux-64"])


def test_scheme_version_is_pinned() -> None:
    # bump HASH_SCHEME and these golden values together, never one without the other
    assert HASH_SCHEME == 2


def test_spec_hash_golden() -> None:
    spec = env(python="3.11", conda=["NumPy >= 1.26", "xz"], pip=["Foo_Bar>=1"])
    assert spec_hash(spec) == "b04defce7541b7e5"


def test_spec_hash_ignores_order_case_spacing_and_name() -> None:
    a = env(python="3.11", conda=["NumPy >= 1.26", "xz"], pip=["Foo_Bar>=1"])
    b = env_from_dict(
        "other",
        {"python": " 3.11", "conda": ["xz", "numpy>=1.26"], "pip": ["foo-bar >= 1"]},
        platforms=["linux-64"],
    )
    assert spec_hash(a) == spec_hash(b)


def test_spec_hash_ignores_variables_but_not_channels_order() -> None:
    base = env(conda=["xz"], channels=["a", "b"])
    assert spec_hash(base) == spec_hash(env(conda=["xz"], channels=["a", "b"], variables={"X": 1}))
    assert spec_hash(base) != spec_hash(env(conda=["xz"], channels=["b", "a"]))


@pytest.mark.parametrize(
    "change",
    [
        {"python": "3.12"},
        {"conda": ["xz", "bzip2"]},
        {"pip": ["six"]},
        {"kind": "conda", "conda": []},
    ],
)
def test_spec_hash_changes_with_content(change: dict[str, object]) -> None:
    base = {"python": "3.11", "conda": ["xz"]}
    assert spec_hash(env(**base)) != spec_hash(env(**{**base, **change}))


def test_content_hash_golden() -> None:
    assert content_hash(kind="conda", platform="linux-64", conda=[XZ], pip=[SIX]) == (
        "2e4aef45ffbc3e1c02a8e541"
    )


def test_content_hash_ignores_urls_and_order_but_not_bytes() -> None:
    first = content_hash(kind="conda", platform="linux-64", conda=[XZ, {**XZ, "name": "a"}], pip=[])
    second = content_hash(
        kind="conda",
        platform="linux-64",
        conda=[{**XZ, "name": "a", "url": "https://mirror/x"}, {**XZ, "url": "file:///x"}],
        pip=[],
    )
    assert first == second
    tampered = content_hash(
        kind="conda",
        platform="linux-64",
        conda=[{**XZ, "sha256": "0" * 64}, {**XZ, "name": "a"}],
        pip=[],
    )
    assert tampered != first
    assert content_hash(kind="conda", platform="osx-64", conda=[XZ], pip=[]) != content_hash(
        kind="conda", platform="linux-64", conda=[XZ], pip=[]
    )


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("NumPy >= 1.26", "numpy>=1.26"),
        ("numpy 1.26 py_0", "numpy 1.26 py_0"),
        ("conda-forge::XZ", "conda-forge::xz"),
        ("openssl >=3, <4", "openssl>=3,<4"),
        ("python 3.9.*", "python 3.9.*"),
        # a build glob is not a version glob: they must not hash alike
        ("numpy 1.26 *", "numpy 1.26 *"),
        ("numpy 1.26*", "numpy 1.26*"),
    ],
)
def test_normalize_conda_spec(raw: str, normal: str) -> None:
    assert normalize_conda_spec(raw) == normal


def test_normalize_pip_requirement() -> None:
    assert normalize_pip_requirement("Foo_Bar >= 1.0") == "foo-bar>=1.0"


def test_spec_hash_changes_with_kind() -> None:
    assert spec_hash(env(pip=["six"])) != spec_hash(env(pip=["six"], kind="conda"))
    assert spec_hash(env(pip=["six"])) == spec_hash(env(pip=["six"], kind="venv"))
