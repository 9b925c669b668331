"""``link`` in the model: the spec key, the prefix address (golden), the receipt, the scripts."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from cema.engines.micromamba.script import render_script
from cema.errors import SpecError
from cema.model.hashing import prefix_address
from cema.model.lock import CondaRecord, LockedPlatform, PipRecord
from cema.model.plan import Create, Plan
from cema.model.receipt import Receipt
from cema.model.spec import dump_project, project_from_dict

#: the golden content hash of tests/unit/test_hashing.py (xz + six)
GOLDEN_CONTENT = "2e4aef45ffbc3e1c02a8e541"
SHA = "0123456789abcdef" * 4


def project(**top: object):  # type: ignore[no-untyped-def]
    envs = top.pop("environments")
    return project_from_dict({"version": 1, "platforms": ["linux-64"], **top, "environments": envs})


# --- the spec ---------------------------------------------------------------------------------


def test_link_defaults_to_hardlink_and_an_env_or_the_project_may_say_copy() -> None:
    plain = project(environments={"a": {"conda": ["xz"]}})
    assert (plain.link, plain.environments["a"].link) == ("hardlink", "hardlink")
    mixed = project(
        link="copy",
        environments={"a": {"conda": ["xz"]}, "b": {"conda": ["xz"], "link": "hardlink"}},
    )
    assert mixed.environments["a"].link == "copy"  # the project's default
    assert mixed.environments["b"].link == "hardlink"  # its own wins


def test_link_survives_a_dump_and_a_reload() -> None:
    spec = project(
        link="copy",
        environments={"a": {"conda": ["xz"]}, "b": {"conda": ["xz"], "link": "hardlink"}},
    )
    import yaml

    again = project_from_dict(yaml.safe_load(dump_project(spec)))
    assert {n: e.link for n, e in again.environments.items()} == {"a": "copy", "b": "hardlink"}
    assert "link" not in dump_project(project(environments={"a": {"conda": ["xz"]}}))


@pytest.mark.parametrize("where", ["env", "project"])
def test_an_unknown_link_mode_names_its_key(where: str) -> None:
    env: dict[str, object] = {"conda": ["xz"]}
    top: dict[str, object] = {}
    (env if where == "env" else top)["link"] = "softlink"
    with pytest.raises(SpecError) as caught:
        project(**top, environments={"a": env})
    assert caught.value.key == ("environments.a.link" if where == "env" else "link")
    assert "'softlink' is not one of hardlink, copy" in str(caught.value)


# --- the address --------------------------------------------------------------------------------


def test_a_hardlink_prefix_keeps_its_address_and_a_copy_gets_another_golden() -> None:
    assert prefix_address(GOLDEN_CONTENT, "hardlink") == GOLDEN_CONTENT
    assert prefix_address(GOLDEN_CONTENT, "copy") == "b61bc43c7bfff8ef2fb7c585"


# --- the receipt --------------------------------------------------------------------------------


def test_a_copy_receipt_says_so_and_a_hardlink_one_is_written_as_before() -> None:
    copy = Receipt(address="a" * 24, kind="conda", platform="linux-64", link="copy")
    assert json.loads(copy.to_json())["link"] == "copy"
    assert Receipt.from_json(copy.to_json()).link == "copy"
    hard = Receipt(address="a" * 24, kind="conda", platform="linux-64")
    assert "link" not in json.loads(hard.to_json())
    assert Receipt.from_json(hard.to_json()).link == "hardlink"


def test_a_receipt_with_an_unknown_link_is_refused() -> None:
    from cema.model.receipt import receipt_digest

    data = json.loads(Receipt(address="a" * 24, kind="conda", platform="linux-64").to_json())
    data["link"] = "softlink"
    data["digest"] = receipt_digest(data)
    with pytest.raises(ValueError, match="link"):
        Receipt.from_json(json.dumps(data))


# --- the micromamba scripts -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class CopyEnv:
    """What the renderer needs of a resolved env, built with ``link: copy``."""

    env: str
    address: str
    content: LockedPlatform
    interpreter: None = None
    link: str = "copy"


XZ = CondaRecord(
    name="xz",
    version="5.2.6",
    build="0",
    build_number=0,
    subdir="linux-64",
    channel="https://conda.anaconda.org/conda-forge/",
    url="https://conda.anaconda.org/conda-forge/linux-64/xz-5.2.6-0.conda",
    sha256=SHA,
)
SIX = PipRecord(
    name="six",
    version="1.16.0",
    url="https://files.example/six-1.16.0-py3-none-any.whl",
    sha256=SHA,
)


@pytest.mark.parametrize("shell", ["bash", "powershell"])
def test_a_copy_env_is_built_with_copies_by_micromamba_and_uv(shell: str) -> None:
    content = LockedPlatform(platform="linux-64", kind="conda", conda=(XZ,), pip=(SIX,))
    envs = [
        CopyEnv(env="own", address="c" * 24, content=content),
        CopyEnv(env="shared", address="d" * 24, content=content, link="hardlink"),
    ]
    plan = Plan(actions=tuple(Create(env=e.env, address=e.address, kind="conda") for e in envs))
    text = render_script(plan, envs, store_root="/fake", shell=shell).text  # type: ignore[arg-type]
    create = [line for line in text.splitlines() if " create --yes " in line]
    pip = [line for line in text.splitlines() if " pip install " in line]
    assert ["--always-copy" in line for line in create] == [True, False]
    assert ["--link-mode copy" in line for line in pip] == [True, False]
    assert text.count('"link":"copy"') + text.count('"link": "copy"') == 1  # the copy's receipt
