"""A hand-edited lock is refused whatever field the edit touches (the records-hash).

The content hash is the prefix address and covers only what is installed; the records-hash of
each env on each platform covers every field as written, so that an edit of an md5, a URL, a
dependency list or the spec hash is refused as surely as an edit of a sha256.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cema.errors import LockError
from cema.model import _yaml
from cema.model.hashing import content_hash
from cema.model.lockio import read_lock, to_doc, write_lock
from tests.unit.test_lock import sample_lock

Doc = dict[str, Any]


def _conda(doc: Doc) -> Doc:
    return doc["environments"]["b"]["platforms"]["linux-64"]["conda"][0]  # type: ignore[no-any-return]


def _pip(doc: Doc) -> Doc:
    return doc["environments"]["a"]["platforms"]["linux-64"]["pip"][0]  # type: ignore[no-any-return]


def _content(doc: Doc) -> Doc:
    return doc["environments"]["b"]["platforms"]["linux-64"]  # type: ignore[no-any-return]


EDITS: dict[str, Callable[[Doc], None]] = {
    "md5": lambda d: _conda(d).update(md5="0" * 32),
    "size": lambda d: _conda(d).update(size=11),
    "depends": lambda d: _conda(d).update(depends=[]),
    "constrains": lambda d: _conda(d).update(constrains=["zlib <0"]),
    "timestamp": lambda d: _conda(d).update(timestamp=1),
    "noarch": lambda d: _conda(d).update(noarch="generic"),
    "build_number": lambda d: _conda(d).update(build_number=1),
    "no_deps": lambda d: _conda(d).update(no_deps=True),
    "channel": lambda d: _conda(d).update(channel="https://mirror.example/local/"),
    "url": lambda d: _conda(d).update(url="https://mirror.example/local/linux-64/xz.tar.bz2"),
    "pip url": lambda d: _pip(d).update(url="https://mirror.example/six.whl"),
    "pip no_deps": lambda d: _pip(d).update(no_deps=True),
    "omitted": lambda d: _content(d).update(omitted=["cuda"]),
    "spec-hash": lambda d: d["environments"]["b"].update({"spec-hash": "0" * 16}),
    "python": lambda d: d["environments"]["a"].update(python="3.12"),
}


def _edit(path: Path, change: Callable[[Doc], None]) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(_yaml.dump(doc))


@pytest.mark.parametrize("field", sorted(EDITS))
def test_an_edit_outside_the_content_hash_is_refused(tmp_path: Path, field: str) -> None:
    lock, _ = sample_lock(tmp_path)
    path = write_lock(lock, cache_dir=tmp_path / "cache")
    _edit(path, EDITS[field])
    for cache_dir in (None, tmp_path / "cache"):  # the quick copy is keyed by the exact text
        with pytest.raises(LockError, match="records-hash: the lock was edited by hand") as info:
            read_lock(path, cache_dir=cache_dir)
        assert info.value.hint and "cema lock" in info.value.hint


def test_install_commands_are_covered_too(tmp_path: Path) -> None:
    lock, _ = sample_lock(tmp_path)
    path = write_lock(lock)
    # commands are in the content hash as well: forge that one, the records-hash still fails
    doc = yaml.safe_load(path.read_text())
    content = _content(doc)
    content["commands"] = ["echo hi"]
    content["content-hash"] = content_hash(
        kind="conda",
        platform="linux-64",
        conda=content["conda"],
        pip=content["pip"],
        commands=content["commands"],
    )
    path.write_text(_yaml.dump(doc))
    with pytest.raises(LockError, match="edited by hand"):
        read_lock(path)


def test_a_lock_without_records_hash_is_refused_with_its_own_message(tmp_path: Path) -> None:
    lock, _ = sample_lock(tmp_path)
    path = write_lock(lock)
    _edit(path, lambda d: _content(d).pop("records-hash"))
    with pytest.raises(LockError, match="has no records-hash") as info:
        read_lock(path)
    assert info.value.hint and "cema lock" in info.value.hint


def test_the_records_hash_follows_the_content_hash_and_round_trips(tmp_path: Path) -> None:
    lock, _ = sample_lock(tmp_path)
    path = write_lock(lock)
    text = path.read_text()
    assert list(_content(yaml.safe_load(text)))[:2] == ["content-hash", "records-hash"]
    write_lock(read_lock(path), path)
    assert path.read_text() == text
    # moving the project keeps it valid: local channels are hashed as written (relative)
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    tmp_path.rename(moved)
    assert read_lock(moved / "cema.lock").envs.keys() == lock.envs.keys()


def test_the_prefix_address_ignores_a_mirror(tmp_path: Path) -> None:
    """The same records from another URL: another records-hash, the same content hash."""
    lock, _ = sample_lock(tmp_path)
    path = write_lock(lock)
    before = yaml.safe_load(path.read_text())
    mirrored = read_lock(path)
    b = mirrored.envs["b"].platforms["linux-64"]
    from dataclasses import replace

    from cema.model.lock import LockedEnv, LockedPlatform

    moved = LockedPlatform(
        platform="linux-64",
        kind="conda",
        conda=tuple(replace(r, url="https://mirror.example/" + r.file_name) for r in b.conda),
    )
    env = mirrored.envs["b"]
    again = mirrored.with_envs(
        [
            mirrored.envs["a"],
            LockedEnv(
                name="b", spec_hash=env.spec_hash, kind="conda", platforms={"linux-64": moved}
            ),
        ]
    )
    after = to_doc(again)
    assert _content(after)["content-hash"] == _content(before)["content-hash"]
    assert _content(after)["records-hash"] != _content(before)["records-hash"]
