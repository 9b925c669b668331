"""Golden values of the spec hash, content hash and records hash.

A change of the first two changes every user's prefixes; of the last, every lock's records-hash.
"""

from __future__ import annotations

from typing import Any

import pytest

from cema.model.hashing import (
    HASH_SCHEME,
    content_hash,
    normalize_conda_spec,
    normalize_pip_requirement,
    records_hash,
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


# one env on one platform exactly as `cema lock` writes it (the header without `platforms`)
HEADER = {"spec-hash": "b04defce7541b7e5", "kind": "conda"}
WRITTEN = {
    "content-hash": "2e4aef45ffbc3e1c02a8e541",
    "conda": [
        {
            **XZ,
            "build_number": 0,
            "depends": ["libgcc-ng >=12"],
            "constrains": [],
            "channel": "https://conda.anaconda.org/conda-forge/",
            "url": "https://conda.anaconda.org/conda-forge/linux-64/xz-5.2.6-h166bdaf_0.tar.bz2",
            "md5": "2161070d867d1b1204ea749c8eec4ef0",
            "size": 418368,
            "timestamp": 1660346797927,
        }
    ],
    "pip": [{**SIX, "url": "https://files.pythonhosted.org/six-1.16.0-py2.py3-none-any.whl"}],
}


def stamp(header: dict[str, Any] = HEADER, content: dict[str, Any] = WRITTEN, **kw: str) -> str:
    return records_hash(
        env=kw.get("env", "a"),
        header=header,
        platform=kw.get("platform", "linux-64"),
        content=content,
    )


def test_records_hash_golden() -> None:
    assert stamp() == "f40a3f8a978bfc5367457d8f"


def test_records_hash_ignores_key_order_and_its_own_field() -> None:
    reordered = {k: WRITTEN[k] for k in reversed(list(WRITTEN))}
    assert stamp(content=reordered) == stamp()
    assert stamp(content={**WRITTEN, "records-hash": "0" * 24}) == stamp()
    assert stamp(header={**HEADER, "platforms": {"x": 1}}) == stamp()


def _conda(**change: object) -> dict[str, Any]:
    return {**WRITTEN, "conda": [{**WRITTEN["conda"][0], **change}]}


@pytest.mark.parametrize(
    ("what", "header", "content", "where"),
    [
        ("md5", HEADER, _conda(md5="0" * 32), {}),
        ("size", HEADER, _conda(size=418369), {}),
        ("depends", HEADER, _conda(depends=[]), {}),
        ("constrains", HEADER, _conda(constrains=["xz-static <0"]), {}),
        ("timestamp", HEADER, _conda(timestamp=1), {}),
        ("noarch", HEADER, _conda(noarch="generic"), {}),
        ("channel", HEADER, _conda(channel="https://mirror.example/conda-forge/"), {}),
        ("url", HEADER, _conda(url="https://mirror.example/xz.tar.bz2"), {}),
        ("build_number", HEADER, _conda(build_number=1), {}),
        ("no_deps", HEADER, _conda(no_deps=True), {}),
        ("pip url", HEADER, {**WRITTEN, "pip": [{**WRITTEN["pip"][0], "url": "https://x/"}]}, {}),
        ("pip no_deps", HEADER, {**WRITTEN, "pip": [{**WRITTEN["pip"][0], "no_deps": True}]}, {}),
        ("omitted", HEADER, {**WRITTEN, "omitted": ["cuda"]}, {}),
        ("commands", HEADER, {**WRITTEN, "commands": ["echo hi"]}, {}),
        ("content-hash", HEADER, {**WRITTEN, "content-hash": "0" * 24}, {}),
        ("record order", HEADER, {**WRITTEN, "conda": [*WRITTEN["conda"], XZ]}, {}),
        ("spec-hash", {**HEADER, "spec-hash": "0" * 16}, WRITTEN, {}),
        ("python", {**HEADER, "python": "3.12"}, WRITTEN, {}),
        ("kind", {**HEADER, "kind": "venv"}, WRITTEN, {}),
        ("env name", HEADER, WRITTEN, {"env": "b"}),
        ("platform", HEADER, WRITTEN, {"platform": "osx-64"}),
    ],
)
def test_records_hash_covers_every_field(
    what: str, header: dict[str, Any], content: dict[str, Any], where: dict[str, str]
) -> None:
    assert stamp(header, content, **where) != stamp(), what


def test_content_hash_still_ignores_what_only_the_records_hash_covers() -> None:
    """The prefix address stays about installed content: a mirror's copy is the same prefix."""
    mirrored = _conda(url="https://mirror.example/xz.tar.bz2", md5="0" * 32, size=1)
    assert content_hash(
        kind="conda", platform="linux-64", conda=mirrored["conda"], pip=WRITTEN["pip"]
    ) == content_hash(kind="conda", platform="linux-64", conda=WRITTEN["conda"], pip=WRITTEN["pip"])
