"""Lock round trips: deterministic text, relative local channels, hand-edit detection, freshness."""

from __future__ import annotations

from pathlib import Path

import pytest

from cema.errors import LockError, StaleLockError
from cema.model.hashing import spec_hash
from cema.model.lock import CondaRecord, LockedEnv, LockedPlatform, Lockfile, PipRecord, check_fresh
from cema.model.lockio import read_lock, to_yaml, write_lock
from cema.model.spec import project_from_dict


def record(name: str, version: str, channel_dir: Path) -> CondaRecord:
    url = f"file://{channel_dir}/linux-64/{name}-{version}-0.tar.bz2"
    return CondaRecord(
        name=name,
        version=version,
        build="0",
        build_number=0,
        subdir="linux-64",
        channel=f"file://{channel_dir}/",
        url=url,
        sha256="a" * 64,
        md5="b" * 32,
        size=10,
        depends=("libc",),
    )


def sample_lock(tmp_path: Path) -> tuple[Lockfile, object]:
    project = project_from_dict(
        {
            "version": 1,
            "platforms": ["linux-64"],
            "environments": {"b": {"conda": ["zlib", "xz"]}, "a": {"pip": ["six"]}},
        }
    )
    channel = tmp_path / "channels" / "local"
    b = LockedEnv(
        name="b",
        spec_hash=spec_hash(project.env("b")),
        kind="conda",
        platforms={
            "linux-64": LockedPlatform(
                platform="linux-64",
                kind="conda",
                conda=(record("xz", "5.2", channel), record("zlib", "1.3", channel)),
            )
        },
    )
    a = LockedEnv(
        name="a",
        spec_hash=spec_hash(project.env("a")),
        kind="venv",
        python="3.11",
        platforms={
            "linux-64": LockedPlatform(
                platform="linux-64",
                kind="venv",
                pip=(
                    PipRecord(
                        name="six", version="1.16.0", url="https://x/six.whl", sha256="c" * 64
                    ),
                ),
            )
        },
    )
    return Lockfile(path=tmp_path / "cema.lock", envs={"b": b, "a": a}), project


def test_round_trip_is_exact_and_deterministic(tmp_path: Path) -> None:
    lock, _ = sample_lock(tmp_path)
    path = write_lock(lock)
    text = path.read_text()
    again = read_lock(path)
    assert again.envs == lock.envs
    write_lock(again, path)
    assert path.read_text() == text
    # sorted: envs by name, records by name, whatever order they were given in
    assert text.index("\n  a:") < text.index("\n  b:")
    b = lock.envs["b"]
    swapped = LockedPlatform(
        platform="linux-64", kind="conda", conda=tuple(reversed(b.platforms["linux-64"].conda))
    )
    shuffled = lock.with_envs(
        [
            lock.envs["a"],
            LockedEnv(
                name="b", spec_hash=b.spec_hash, kind="conda", platforms={"linux-64": swapped}
            ),
        ]
    )
    assert to_yaml(shuffled) == text
    assert text.index("name: xz") < text.index("name: zlib")


def test_local_channels_are_relative_to_the_lock(tmp_path: Path) -> None:
    lock, _ = sample_lock(tmp_path)
    text = to_yaml(lock)
    assert str(tmp_path) not in text
    assert "url: ./channels/local/linux-64/xz-5.2-0.tar.bz2" in text
    # moving the project folder keeps the lock valid
    write_lock(lock)
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    tmp_path.rename(moved)
    again = read_lock(moved / "cema.lock")
    url = again.envs["b"].platforms["linux-64"].conda[0].url
    assert url.startswith(f"file://{moved}/channels/local/")


def test_hand_edited_record_is_detected(tmp_path: Path) -> None:
    lock, _ = sample_lock(tmp_path)
    path = write_lock(lock)
    path.write_text(path.read_text().replace('version: "5.2"', 'version: "5.3"'))
    with pytest.raises(LockError, match="edited by hand") as info:
        read_lock(path)
    assert info.value.hint and "cema lock" in info.value.hint


def test_broken_structure_names_the_key(tmp_path: Path) -> None:
    lock, _ = sample_lock(tmp_path)
    path = write_lock(lock)
    path.write_text(path.read_text().replace("    spec-hash:", "    spec-hsh:", 1))
    with pytest.raises(LockError, match="not a valid Cema lock") as info:
        read_lock(path)
    assert "spec-hsh" in str(info.value) or "spec-hash" in str(info.value)


def test_missing_lock_and_wrong_version(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="no lock"):
        read_lock(tmp_path / "cema.lock")
    (tmp_path / "cema.lock").write_text("version: 9\nenvironments: {}\n")
    with pytest.raises(LockError, match="format version 9"):
        read_lock(tmp_path / "cema.lock")


def test_freshness(tmp_path: Path) -> None:
    lock, project = sample_lock(tmp_path)
    check_fresh(project, lock)  # type: ignore[arg-type]
    changed = project_from_dict(
        {
            "version": 1,
            "platforms": ["linux-64"],
            "environments": {"b": {"conda": ["zlib", "xz>=5"]}, "a": {"pip": ["six"]}},
        }
    )
    with pytest.raises(StaleLockError, match=r"changed or new in cema\.yaml: b"):
        check_fresh(changed, lock)
    removed = project_from_dict(
        {"version": 1, "platforms": ["linux-64"], "environments": {"a": {"pip": ["six"]}}}
    )
    with pytest.raises(StaleLockError, match="no longer declared: b"):
        check_fresh(removed, lock)


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    lock, _ = sample_lock(tmp_path)
    path = write_lock(lock)
    before = path.read_text()
    bad = LockedEnv(name="c", spec_hash="0" * 16, kind="conda", platforms={"linux-64": object()})  # type: ignore[dict-item]
    with pytest.raises(AttributeError):
        write_lock(lock.with_envs([*lock.envs.values(), bad]), path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


TRICKY = [
    "3.10",
    "1e5",
    "0o17",
    "yes",
    "No",
    "null",
    "~",
    "",
    " lead",
    "trail ",
    "a: b",
    "a #b",
    "- x",
    "[x]",
    "{x}",
    "'q'",
    '"q"',
    "\\",
    "ünï",
    "https://u:p@x/y?z=1&w",
    "./rel/x.conda",
    "../up",
    ".5",
    ".inf",
    "2024-06-02",
    "true",
    "@at",
    "!tag",
    "*ref",
    "&anchor",
    "%pct",
    "x\ny",
    "libgcc-ng >=12",
    "_libgcc_mutex ==0.1 conda_forge",
    "h166bdaf_0",
    "2_gnu",
]


@pytest.mark.parametrize("text", TRICKY)
def test_yaml_writer_round_trips_every_string(text: str) -> None:
    import yaml

    from cema.model import _yaml

    doc = {"k": text, "l": [text, {"n": text, "e": []}], text or "empty": 1}
    assert yaml.safe_load(_yaml.dump(doc)) == doc


def test_credentials_never_land_in_the_lock(tmp_path: Path) -> None:
    from dataclasses import replace

    lock, _ = sample_lock(tmp_path)
    a = lock.envs["a"]
    content = a.platforms["linux-64"]
    secret_pip = replace(content.pip[0], url="https://user:s3cret@pypi.example/six.whl")
    secret_conda = replace(
        record("xz", "5.2", tmp_path),
        channel="https://conda.anaconda.org/t/tk-0123456789abcdef42/private/",
        url="https://conda.anaconda.org/t/tk-0123456789abcdef42/private/linux-64/xz-5.2-0.tar.bz2",
    )
    env = LockedEnv(
        name="a",
        spec_hash=a.spec_hash,
        kind="conda",
        platforms={
            "linux-64": LockedPlatform(
                platform="linux-64", kind="conda", conda=(secret_conda,), pip=(secret_pip,)
            )
        },
    )
    text = to_yaml(lock.with_envs([env]))
    assert "s3cret" not in text and "tk-0123456789abcdef42" not in text
    assert "https://pypi.example/six.whl" in text
    assert "https://conda.anaconda.org/private/linux-64/xz-5.2-0.tar.bz2" in text


def test_yaml_writer_round_trips_random_unicode() -> None:
    import random

    import yaml

    from cema.model import _yaml

    rng = random.Random(20261125)
    ranges = [(0, 0x7F), (0x80, 0x3000), (0xE000, 0xFFFD), (0x10000, 0x10FFFF)]
    specials = [0x85, 0x2028, 0x2029, 0xFEFF, 0x7F, 0x0]
    for _ in range(2000):
        chars = []
        for _ in range(rng.randint(0, 8)):
            if rng.random() < 0.1:
                chars.append(chr(rng.choice(specials)))
            else:
                low, high = rng.choice(ranges)
                chars.append(chr(rng.randint(low, high)))
        text = "".join(chars)
        doc = {"k": text, "l": [text, {"n": text}]}
        assert yaml.load(_yaml.dump(doc), Loader=yaml.SafeLoader) == doc, repr(text)
