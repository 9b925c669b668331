"""The lock-to-lock diff: per env and platform, added, removed, changed (version or build)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from cema.model.lock import CondaRecord, LockedEnv, LockedPlatform, Lockfile, PipRecord
from cema.model.lockdiff import diff_locks

SPECS = Path(__file__).resolve().parents[2] / "specs"


def rec(name: str, version: str, build: str = "0", platform: str = "linux-64") -> CondaRecord:
    return CondaRecord(
        name=name,
        version=version,
        build=build,
        build_number=0,
        subdir=platform,
        channel="https://example.invalid/ch/",
        url=f"https://example.invalid/ch/{platform}/{name}-{version}-{build}.conda",
        sha256=f"{abs(hash((name, version, build))):064x}"[-64:],
    )


def env(
    name: str,
    *platforms: tuple[str, tuple[CondaRecord, ...]],
    pip: tuple[PipRecord, ...] = (),
    spec: str = "s1",
) -> LockedEnv:
    return LockedEnv(
        name=name,
        spec_hash=spec,
        kind="conda",
        platforms={
            p: LockedPlatform(platform=p, kind="conda", conda=records, pip=pip)
            for p, records in platforms
        },
    )


def lock(*envs: LockedEnv) -> Lockfile:
    return Lockfile().with_envs(envs)


def test_identical_locks_say_no_change() -> None:
    a = env("a", ("linux-64", (rec("xz", "1"),)))
    diff = diff_locks(lock(a), lock(a))
    assert not diff
    assert diff.lines() == ["no change"]
    assert diff.relocked == () and [e.status for e in diff.envs] == ["unchanged"]


def test_added_removed_changed_and_build_only_lines() -> None:
    old = lock(
        env("a", ("linux-64", (rec("xz", "1"), rec("zlib", "1"), rec("bz2", "1", "h0")))),
        env("gone", ("linux-64", (rec("six", "1"),))),
    )
    new = lock(
        env(
            "a",
            ("linux-64", (rec("xz", "2"), rec("lz4", "3"), rec("bz2", "1", "h1"))),
            spec="s2",
        ),
        env("fresh", ("osx-arm64", (rec("attrs", "24", platform="osx-arm64"),))),
    )
    diff = diff_locks(old, new)
    by_name = {e.name: e for e in diff.envs}
    assert {n: e.status for n, e in by_name.items()} == {
        "a": "changed",
        "fresh": "added",
        "gone": "removed",
    }
    assert by_name["a"].spec_changed and not by_name["fresh"].spec_changed
    assert diff.lines() == [
        "a [linux-64]:",
        "  + lz4 3",
        "  - zlib 1",
        "  ~ bz2 1 h0 -> h1",
        "  ~ xz 1 -> 2",
        "fresh [osx-arm64] (added):",
        "  + attrs 24",
        "gone [linux-64] (removed):",
        "  - six 1",
    ]
    assert [e.name for e in diff.relocked] == ["a", "fresh", "gone"]


def test_a_new_platform_and_pip_records_named_like_conda_ones() -> None:
    pip = (PipRecord(name="xz", version="9", url="https://x.invalid/xz.whl", sha256="a" * 64),)
    old = lock(env("a", ("linux-64", (rec("xz", "1"),))))
    new = lock(
        env("a", ("linux-64", (rec("xz", "1"),)), ("osx-64", (rec("xz", "1", platform="osx-64"),)))
    )
    (a,) = diff_locks(old, new).envs
    assert [(p.platform, p.status) for p in a.platforms] == [
        ("linux-64", "unchanged"),
        ("osx-64", "added"),
    ]
    newer = lock(env("a", ("linux-64", (rec("xz", "1"),)), pip=pip))
    (a,) = diff_locks(old, newer).envs
    assert a.platforms[0].lines() == ["+ pip:xz 9"]


def test_spec_only_change_is_relocked_without_package_changes() -> None:
    old = lock(env("a", ("linux-64", (rec("xz", "1"),))))
    new = lock(env("a", ("linux-64", (rec("xz", "1"),)), spec="s2"))
    diff = diff_locks(old, new)
    assert not diff and diff.lines() == ["no change"]
    assert [e.name for e in diff.relocked] == ["a"]


def test_unchanged_deferred_content_is_compared_by_hash_alone() -> None:
    def boom() -> tuple[tuple[CondaRecord, ...], tuple[PipRecord, ...]]:
        raise AssertionError("records must not be read")

    def deferred() -> LockedPlatform:
        return LockedPlatform.deferred(
            platform="linux-64", kind="conda", content_hash="h" * 16, load=boom
        )

    old = Lockfile().with_envs(
        [LockedEnv(name="a", spec_hash="s", kind="conda", platforms={"linux-64": deferred()})]
    )
    new = Lockfile().with_envs(
        [LockedEnv(name="a", spec_hash="s", kind="conda", platforms={"linux-64": deferred()})]
    )
    assert not diff_locks(old, new)


def test_diff_json_matches_the_lock_output_schema() -> None:
    old = lock(env("a", ("linux-64", (rec("xz", "1", "h0"),))))
    new = lock(env("a", ("linux-64", (rec("xz", "1", "h1"), rec("lz4", "3")))))
    document = {
        "version": 1,
        "lock": "cema.lock",
        "written": True,
        "changed": True,
        "envs": diff_locks(old, new).to_json(),
    }
    schema = json.loads((SPECS / "cli-lock.schema.json").read_text())
    jsonschema.validate(document, schema)
    (platform,) = document["envs"][0]["platforms"]
    assert platform["changed"] == [
        {
            "name": "xz",
            "old_version": "1",
            "new_version": "1",
            "old_build": "h0",
            "new_build": "h1",
        }
    ]
