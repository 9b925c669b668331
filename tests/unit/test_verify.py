"""``verify_prefix`` on hand-made prefixes: the records' shapes rattler and uv write."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from cema.model.receipt import Receipt
from cema.store import RECEIPT_NAME
from cema.verify import Problem, damaged_cache_dirs, verify_prefix

SITE = "lib/python3.11/site-packages"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_prefix(root: Path, *, engine: str = "rattler") -> Path:
    """A prefix of one conda package ``demo`` and one pip distribution ``six``."""
    prefix = root / "prefix"
    plain = b"plain content\n"
    linked = b"#!/the/final/prefix/bin/python\n"  # what the installer wrote
    archived = b"#!/opt/placeholder_placehold_placehold/bin/python\n"
    files = {
        "lib/plain.txt": plain,
        "bin/script": linked,
        f"{SITE}/six.py": b"six = 1\n",
        f"{SITE}/six-1.16.0.dist-info/METADATA": b"Name: six\n",
    }
    for rel, data in files.items():
        (prefix / rel).parent.mkdir(parents=True, exist_ok=True)
        (prefix / rel).write_bytes(data)
    (prefix / "lib" / "link.txt").symlink_to("plain.txt")
    paths = [
        {"_path": "lib/plain.txt", "path_type": "hardlink", "sha256": sha(plain)}
        | {"size_in_bytes": len(plain)},
        {
            "_path": "bin/script",
            "path_type": "hardlink",
            "sha256": sha(archived),
            "sha256_in_prefix": sha(linked),
            "size_in_bytes": len(linked),
            "file_mode": "text",
            "prefix_placeholder": "/opt/placeholder_placehold_placehold",
        },
        # a link's numbers are its target's (rattler writes them): presence only
        {"_path": "lib/link.txt", "path_type": "softlink", "sha256": "0" * 64, "size_in_bytes": 1},
    ]
    meta = prefix / "conda-meta"
    meta.mkdir()
    record = {
        "name": "demo",
        "version": "1.0",
        "files": [p["_path"] for p in paths],
        "paths_data": {"paths_version": 1, "paths": paths},
        "extracted_package_dir": str(root / "pkgs" / "demo-1.0-0"),
    }
    (meta / "demo-1.0-0.json").write_text(json.dumps(record))
    (prefix / "bin" / "six-tool").write_bytes(b"tool\n")  # an entry point, outside site-packages
    lines = [
        f"six.py,{record_hash(files[f'{SITE}/six.py'])},8",
        f"six-1.16.0.dist-info/METADATA,{record_hash(files[f'{SITE}/six-1.16.0.dist-info/METADATA'])},10",
        "six-1.16.0.dist-info/RECORD,,",  # no size: skipped
        "__pycache__/six.cpython-311.pyc,,",  # never written: skipped
        f"../../../bin/six-tool,{record_hash(b'tool' + chr(10).encode())},5",
        "../../../../outside/the/prefix,sha256=x,1",  # not ours to judge
    ]
    (prefix / SITE / "six-1.16.0.dist-info" / "RECORD").write_text("\n".join(lines) + "\n")
    receipt = Receipt(
        address="prefix",
        kind="conda",
        platform="linux-64",
        conda=(("demo", "1.0"),),
        pip=(("six", "1.16.0"),),
        engine=engine,
    )
    (prefix / RECEIPT_NAME).write_text(receipt.to_json())
    return prefix


def test_a_clean_prefix_has_no_problems(tmp_path: Path) -> None:
    prefix = make_prefix(tmp_path)
    assert verify_prefix(prefix) == []
    assert verify_prefix(prefix, full=True) == []


def test_a_venv_without_conda_meta_and_an_empty_folder_are_clean(tmp_path: Path) -> None:
    assert verify_prefix(tmp_path) == []
    (tmp_path / SITE).mkdir(parents=True)
    assert verify_prefix(tmp_path, full=True) == []


def test_deleted_truncated_and_edited_files(tmp_path: Path) -> None:
    prefix = make_prefix(tmp_path)
    (prefix / "lib" / "plain.txt").write_bytes(b"PLAIN content\n")  # same size
    assert verify_prefix(prefix) == []
    assert verify_prefix(prefix, full=True)[0] == Problem(
        "lib/plain.txt", "hash", "demo", "the content differs from its record"
    )
    (prefix / "bin" / "script").write_bytes(b"#!short\n")
    (prefix / SITE / "six.py").unlink()
    (prefix / "lib" / "link.txt").unlink()
    (prefix / "bin" / "six-tool").write_bytes(b"TOOL\n")
    assert [str(p) for p in verify_prefix(prefix)] == [
        "size bin/script (demo): 8 bytes, recorded 31",
        "missing lib/link.txt (demo)",
        f"missing {SITE}/six.py (six)",
    ]
    assert verify_prefix(prefix, full=True)[-1] == Problem(
        "bin/six-tool", "hash", "six", "the content differs from its RECORD"
    )
    assert damaged_cache_dirs(prefix, verify_prefix(prefix)) == [tmp_path / "pkgs" / "demo-1.0-0"]


def test_a_dangling_link_is_present(tmp_path: Path) -> None:
    prefix = make_prefix(tmp_path)
    (prefix / "lib" / "plain.txt").rename(prefix / "lib" / "moved.txt")
    assert [p.path for p in verify_prefix(prefix)] == ["lib/plain.txt"]


@pytest.mark.parametrize("engine", ["micromamba", "unknown"])
def test_rewritten_files_are_not_measured_for_other_builders(tmp_path: Path, engine: str) -> None:
    prefix = make_prefix(tmp_path, engine=engine)
    (prefix / "bin" / "script").write_bytes(b"#!/another/prefix/of/another/length/bin/python\n")
    assert verify_prefix(prefix) == []  # a text placeholder's size is the builder's business
    # sha256_in_prefix is the builder's hash of the file it wrote: still checked in full
    assert [p.path for p in verify_prefix(prefix, full=True) if p.package == "demo"] == [
        "bin/script"
    ]


def test_a_placeholder_without_sha256_in_prefix_is_presence_only(tmp_path: Path) -> None:
    prefix = make_prefix(tmp_path)
    meta = next((prefix / "conda-meta").glob("*.json"))
    record = json.loads(meta.read_text())
    del record["paths_data"]["paths"][1]["sha256_in_prefix"]
    meta.write_text(json.dumps(record))
    (prefix / "bin" / "script").write_bytes(b"#!x\n")
    assert [p for p in verify_prefix(prefix, full=True) if p.package == "demo"] == []


def test_records_gone_or_broken_are_problems(tmp_path: Path) -> None:
    prefix = make_prefix(tmp_path)
    meta = next((prefix / "conda-meta").glob("*.json"))
    meta.write_text("{not json")
    shutil.rmtree(prefix / SITE / "six-1.16.0.dist-info")
    assert [(p.kind, p.path, p.package) for p in verify_prefix(prefix)] == [
        ("record", "conda-meta/demo-1.0-0.json", "demo-1.0-0"),
        ("record", "conda-meta", "demo"),
        ("record", SITE, "six"),
    ]


def test_files_only_records_are_checked_for_presence(tmp_path: Path) -> None:
    prefix = make_prefix(tmp_path)
    meta = next((prefix / "conda-meta").glob("*.json"))
    record = json.loads(meta.read_text())
    del record["paths_data"]
    record["files"].append("lib/gone.txt")
    meta.write_text(json.dumps(record))
    assert [str(p) for p in verify_prefix(prefix, full=True) if p.package == "demo"] == [
        "missing lib/gone.txt (demo)"
    ]
