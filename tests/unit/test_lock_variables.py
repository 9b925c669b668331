"""The lock records an env's ``variables`` and what its install commands run with (#18, #14).

What install commands may read (``CEMA_ENV`` and the spec's ``variables``) is part of the
address of a prefix with commands; a prefix without commands keeps its address, and a lock
written before these fields existed reads as it did.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cema.errors import LockError
from cema.model import _yaml
from cema.model.hashing import content_hash
from cema.model.lock import (
    LockedEnv,
    LockedPlatform,
    Lockfile,
    commands_environment,
    stale_envs,
    with_spec_fields,
)
from cema.model.lockio import read_lock, write_lock
from cema.model.spec import project_from_dict
from tests.unit.test_hashing import SIX, XZ
from tests.unit.test_lock import sample_lock

COMMANDS = ("echo $GREETING > seen.txt",)


def _platform(commands_env: tuple[tuple[str, str], ...] = ()) -> LockedPlatform:
    from tests.unit.test_lock import record

    return LockedPlatform(
        platform="linux-64",
        kind="conda",
        conda=(record("xz", "5.2", Path("/channels/local")),),
        commands=COMMANDS,
        commands_env=commands_env,
    )


def test_without_commands_the_address_is_the_golden_one() -> None:
    # the value of test_hashing's golden: variables never reach an address without commands
    given = [("CEMA_ENV", "e"), ("GREETING", "hi")]
    assert (
        content_hash(kind="conda", platform="linux-64", conda=[XZ], pip=[SIX], commands_env=given)
        == "2e4aef45ffbc3e1c02a8e541"
    )
    bare = LockedPlatform(platform="linux-64", kind="conda", commands_env=given)
    assert bare.commands_env == ()
    assert bare.content_hash == LockedPlatform(platform="linux-64", kind="conda").content_hash


def test_with_commands_what_they_read_is_content() -> None:
    hi = _platform(commands_environment("e", [("GREETING", "hi")]))
    ho = _platform(commands_environment("e", [("GREETING", "ho")]))
    other_name = _platform(commands_environment("f", [("GREETING", "hi")]))
    assert hi.commands_env == (("CEMA_ENV", "e"), ("GREETING", "hi"))
    assert len({hi.content_hash, ho.content_hash, other_name.content_hash}) == 3
    same = _platform(commands_environment("e", [("GREETING", "hi")]))
    assert hi.content_hash == same.content_hash
    # a lock written before commands-env was recorded keeps the address it had
    old = _platform()
    records = [r.as_dict() for r in old.conda]
    before = content_hash(
        kind="conda", platform="linux-64", conda=records, pip=[], commands=COMMANDS
    )
    assert old.content_hash == before
    assert old.content_hash != hi.content_hash


def test_spec_variables_win_over_cema_env() -> None:
    assert commands_environment("e", [("CEMA_ENV", "mine")]) == (("CEMA_ENV", "mine"),)


def _with_fields(tmp_path: Path) -> Lockfile:
    lock, _ = sample_lock(tmp_path)
    b = lock.envs["b"]
    env = LockedEnv(
        name="b",
        spec_hash=b.spec_hash,
        kind="conda",
        variables=(("GREETING", "hi"), ("ZONE", "01")),
        platforms={"linux-64": _platform(commands_environment("b", [("GREETING", "hi")]))},
    )
    return lock.with_envs([lock.envs["a"], env])


def test_variables_and_commands_env_round_trip(tmp_path: Path) -> None:
    lock = _with_fields(tmp_path)
    path = write_lock(lock, cache_dir=tmp_path / "cache")
    doc = yaml.safe_load(path.read_text())
    body = doc["environments"]["b"]
    assert body["variables"] == {"GREETING": "hi", "ZONE": "01"}  # "01" stays a string
    assert body["platforms"]["linux-64"]["commands-env"] == {"CEMA_ENV": "b", "GREETING": "hi"}
    assert "variables" not in doc["environments"]["a"]
    for cache_dir in (None, tmp_path / "cache", tmp_path / "cache"):  # YAML, copy, copy again
        again = read_lock(path, cache_dir=cache_dir)
        assert again.envs["b"].variables == (("GREETING", "hi"), ("ZONE", "01"))
        content = again.envs["b"].platforms["linux-64"]
        assert content.commands_env == (("CEMA_ENV", "b"), ("GREETING", "hi"))
        assert content.content_hash == lock.envs["b"].platforms["linux-64"].content_hash


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b["variables"].update(GREETING="ho"),
        lambda b: b["platforms"]["linux-64"]["commands-env"].update(GREETING="ho"),
        lambda b: b["platforms"]["linux-64"].pop("commands-env"),
    ],
    ids=["variables", "commands-env", "commands-env removed"],
)
def test_an_edit_of_the_new_fields_is_refused(tmp_path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = write_lock(_with_fields(tmp_path))
    doc = yaml.safe_load(path.read_text())
    edit(doc["environments"]["b"])
    path.write_text(_yaml.dump(doc))
    with pytest.raises(LockError, match="edited by hand"):
        read_lock(path)


def test_an_old_lock_without_the_new_fields_still_works(tmp_path: Path) -> None:
    project = project_from_dict(
        {
            "version": 1,
            "platforms": ["linux-64"],
            "environments": {
                "plain": {"conda": ["xz"]},
                "cmds": {"conda": ["xz"], "install_commands": {"all": list(COMMANDS)}},
                "vars": {"conda": ["xz"], "variables": {"GREETING": "hi"}},
            },
        }
    )
    from cema.model.hashing import spec_hash

    # what an older Cema wrote: no variables, no commands-env (this writer omits them when empty)
    old = Lockfile(path=tmp_path / "cema.lock").with_envs(
        LockedEnv(
            name=name,
            spec_hash=spec_hash(project.env(name)),
            kind="conda",
            platforms={"linux-64": _platform() if name == "cmds" else _platform_bare()},
        )
        for name in ("plain", "cmds", "vars")
    )
    path = write_lock(old)
    text = path.read_text()
    assert "variables" not in text and "commands-env" not in text
    lock = read_lock(path)
    assert lock.envs["cmds"].platforms["linux-64"].content_hash == (
        old.envs["cmds"].platforms["linux-64"].content_hash
    )
    # fresh where nothing is missing; an env with variables or commands is locked again
    assert stale_envs(project, lock) == ["cmds", "vars"]
    renewed = {n: with_spec_fields(lock.envs[n], project.env(n)) for n in ("plain", "cmds", "vars")}
    assert renewed["plain"] is lock.envs["plain"]
    assert renewed["vars"].variables == (("GREETING", "hi"),)
    cmds = renewed["cmds"].platforms["linux-64"]
    assert cmds.commands_env == (("CEMA_ENV", "cmds"),)
    assert cmds.conda == lock.envs["cmds"].platforms["linux-64"].conda  # records kept, no solve
    assert stale_envs(project, lock.with_envs(renewed.values())) == []


def _platform_bare() -> LockedPlatform:
    from tests.unit.test_lock import record

    return LockedPlatform(
        platform="linux-64", kind="conda", conda=(record("xz", "5.2", Path("/channels/local")),)
    )
