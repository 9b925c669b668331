"""Check installed prefixes against their package records (conda-meta, pip RECORD, receipt)."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cema.model.receipt import Receipt
from cema.store import RECEIPT_NAME, Store

ProblemKind = Literal["missing", "size", "hash", "record"]
EnvState = Literal["ok", "damaged", "not installed"]
#: the builder whose ``size_in_bytes``/``sha256`` describe the files it wrote (measured: text
#: and binary placeholders, python entry points); others are trusted with copied files only
_LINKED_SIZES_ENGINES = frozenset({"rattler"})
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing in a prefix that does not match the record that installed it."""

    path: str  #: relative to the prefix, ``/``-separated
    kind: ProblemKind
    package: str
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.kind} {self.path} ({self.package})"
        return f"{text}: {self.detail}" if self.detail else text


def _sha256(path: str) -> bytes | None:
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    try:
        with open(path, "rb", buffering=0) as f:  # noqa: PTH123 - str paths: the hot loop
            while n := f.readinto(buffer):
                digest.update(view[:n])
    except OSError:
        return None
    return digest.digest()


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:  # absent, or a file where a folder of its path should be
        return None


def _receipt(prefix: Path) -> Receipt | None:
    try:
        return Receipt.from_json((prefix / RECEIPT_NAME).read_text("utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- the conda layer -----------------------------------------------------------------------------


def _conda_paths(data: dict[str, Any]) -> list[dict[str, Any]]:
    paths_data = data.get("paths_data")
    if isinstance(paths_data, dict) and isinstance(paths_data.get("paths"), list):
        return [p for p in paths_data["paths"] if isinstance(p, dict) and "_path" in p]
    return [{"_path": p} for p in data.get("files", ()) if isinstance(p, str)]


def _expected(item: dict[str, Any], trusted: bool) -> tuple[int | None, str | None]:
    """The size and sha256 a linked file must have (None: not recorded, or not knowable)."""
    placeholder = "prefix_placeholder" in item
    if placeholder or item.get("path_type", "hardlink") != "hardlink":
        # written by the installer (prefix replaced, entry point): the archive's numbers do
        # not hold; ``sha256_in_prefix`` is the installer's hash of what it wrote
        if not trusted:
            return None, item.get("sha256_in_prefix")
        if placeholder:
            if "sha256_in_prefix" not in item:
                return None, None
            return item.get("size_in_bytes"), item["sha256_in_prefix"]
    in_prefix = item.get("sha256_in_prefix")
    if in_prefix and item.get("sha256") and in_prefix != item["sha256"]:
        # rewritten at link time without a recorded placeholder (micromamba 2.8 records it so):
        # the archive's size does not hold, the hash of what was written does
        return None, in_prefix
    return item.get("size_in_bytes"), in_prefix or item.get("sha256")


def _check_conda_file(
    root: str, item: dict[str, Any], package: str, *, full: bool, trusted: bool
) -> Problem | None:
    rel = str(item["_path"])
    path = root + rel  # a plain str per file is the fast path (root ends with a separator)
    st = _lstat(path)
    if st is None:
        return Problem(rel, "missing", package)
    path_type = item.get("path_type")
    regular = stat.S_ISREG(st.st_mode)
    if path_type in ("softlink", "directory") or (path_type is None and not regular):
        return None  # presence only: a link's recorded numbers are its target's
    if not regular:
        return Problem(rel, "missing", package, "something else stands in place of the file")
    size, sha = _expected(item, trusted)
    if size is not None and st.st_size != size:
        return Problem(rel, "size", package, f"{st.st_size} bytes, recorded {size}")
    if full and isinstance(sha, str) and len(sha) == 64:
        actual = _sha256(path)
        if actual is None or actual.hex() != sha.lower():
            return Problem(rel, "hash", package, "the content differs from its record")
    return None


def _check_conda(
    prefix: Path, *, full: bool, trusted: bool, owned: set[str], found: dict[str, str]
) -> list[Problem]:
    out: list[Problem] = []
    try:
        entries = sorted(os.scandir(prefix / "conda-meta"), key=lambda e: e.name)
    except OSError:
        return out  # a venv: no conda layer
    root = os.path.join(str(prefix), "")  # noqa: PTH118 - ends with the separator
    for entry in entries:
        if not entry.name.endswith(".json"):
            continue
        try:
            with open(entry.path, "rb") as f:  # noqa: PTH123
                data = json.load(f)
            name, version = str(data["name"]), str(data["version"])
            paths = _conda_paths(data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            detail = f"the package record cannot be read ({type(exc).__name__})"
            out.append(Problem(f"conda-meta/{entry.name}", "record", entry.name[:-5], detail))
            continue
        found[name] = version
        for item in paths:
            owned.add(str(item["_path"]))
            problem = _check_conda_file(root, item, name, full=full, trusted=trusted)
            if problem is not None:
                out.append(problem)
    return out


# -- the pip layer -------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def site_packages(prefix: Path) -> list[Path]:
    """The site-packages folders of a conda prefix or venv (POSIX and Windows layouts)."""
    found = sorted(prefix.glob("lib/python*/site-packages"))
    windows = prefix / "Lib" / "site-packages"
    if windows.is_dir() and windows not in found:
        found.append(windows)
    return found


def _check_record_line(
    prefix: str, site: str, row: list[str], package: str, *, full: bool
) -> Problem | None:
    if len(row) < 3 or not row[2].strip().isdigit():
        return None  # no size: the RECORD itself, or a file the installer did not measure
    target = os.path.normpath(os.path.join(site, row[0]))  # noqa: PTH118
    rel = os.path.relpath(target, prefix)
    if rel.startswith(os.pardir) or os.path.isabs(rel):  # noqa: PTH117
        return None  # outside the prefix: not ours to judge
    rel = rel.replace(os.sep, "/")
    st = _lstat(target)
    if st is None:
        return None if rel.endswith(".pyc") else Problem(rel, "missing", package)
    if stat.S_ISLNK(st.st_mode):
        return None
    size = int(row[2])
    if st.st_size != size:
        return Problem(rel, "size", package, f"{st.st_size} bytes, recorded {size}")
    algorithm, _, value = row[1].partition("=")
    if full and algorithm == "sha256" and value:
        actual = _sha256(target)
        encoded = base64.urlsafe_b64encode(actual).rstrip(b"=").decode() if actual else None
        if encoded != value.rstrip("="):
            return Problem(rel, "hash", package, "the content differs from its RECORD")
    return None


def _check_pip(
    prefix: Path, *, full: bool, owned: set[str], found: dict[str, str]
) -> list[Problem]:
    out: list[Problem] = []
    root = str(prefix)
    for site in site_packages(prefix):
        for dist in sorted(site.glob("*.dist-info")):
            name = dist.name[: -len(".dist-info")].rpartition("-")[0] or dist.name
            found[_canonical(name)] = dist.name
            record = dist / "RECORD"
            rel_record = record.relative_to(prefix).as_posix()
            if rel_record in owned:
                continue  # installed by the conda layer: its conda-meta record was checked
            try:
                with record.open(encoding="utf-8", newline="") as f:
                    rows = list(csv.reader(f))
            except FileNotFoundError:
                continue  # a dist-info without RECORD promises nothing
            except (OSError, ValueError, csv.Error) as exc:
                detail = f"the RECORD cannot be read ({type(exc).__name__})"
                out.append(Problem(rel_record, "record", name, detail))
                continue
            for row in rows:
                problem = _check_record_line(root, str(site), row, name, full=full)
                if problem is not None:
                    out.append(problem)
    return out


def _against_receipt(
    receipt: Receipt, conda: dict[str, str], pip: dict[str, str], prefix: Path
) -> list[Problem]:
    """Packages the receipt lists whose records are gone (their files would go unchecked)."""
    out: list[Problem] = []
    for name, version in receipt.conda:
        if conda.get(name) != version:
            detail = f"no conda-meta record of {name} {version}"
            out.append(Problem("conda-meta", "record", name, detail))
    sites = site_packages(prefix)
    where = sites[0].relative_to(prefix).as_posix() if sites else "site-packages"
    for name, version in receipt.pip:
        if _canonical(name) not in pip:
            out.append(Problem(where, "record", name, f"no .dist-info of {name} {version}"))
    return out


def verify_prefix(prefix: Path, *, full: bool = False) -> list[Problem]:
    """What in ``prefix`` differs from the records that installed it (``[]``: all intact).

    The fast check reads the records and ``lstat``s every file they list: present, and of the
    recorded size. ``full`` also hashes every file against its recorded sha256. Links are
    checked for presence only; files the installer rewrote (prefix placeholders, entry points)
    are measured only where the builder recorded the file it wrote (rattler does). Packages the
    receipt lists must still have their records.
    """
    prefix = Path(prefix)
    receipt = _receipt(prefix)
    trusted = receipt is not None and receipt.engine in _LINKED_SIZES_ENGINES
    owned: set[str] = set()
    conda: dict[str, str] = {}
    pip: dict[str, str] = {}
    problems = _check_conda(prefix, full=full, trusted=trusted, owned=owned, found=conda)
    problems += _check_pip(prefix, full=full, owned=owned, found=pip)
    if receipt is not None:
        problems += _against_receipt(receipt, conda, pip, prefix)
    return problems


def damaged_cache_dirs(prefix: Path, problems: Iterable[Problem]) -> list[Path]:
    """The package-cache folders that may share a changed file with ``prefix`` (hard links).

    A file edited or truncated in place changes its hard-linked copy in the package cache too;
    rebuilding from that cache links the damage again, so these folders must go first.
    """
    changed = {p.package for p in problems if p.kind in ("size", "hash")}
    out: set[Path] = set()
    for meta in sorted((prefix / "conda-meta").glob("*.json")) if changed else ():
        try:
            data = json.loads(meta.read_text("utf-8"))
            if data["name"] in changed and data.get("extracted_package_dir"):
                out.add(Path(data["extracted_package_dir"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(out)


def verify_cache_entry(entry: Path, *, full: bool = False) -> list[Problem]:
    """Check one extracted package of the package cache against its ``info/paths.json``.

    The cache holds each file as the archive has it (prefix placeholders not yet replaced),
    so every regular file must have its recorded size (and sha256, with ``full``). A damaged
    entry must be extracted again before anything links from it.
    """
    package = entry.name
    try:
        data = json.loads((entry / "info" / "paths.json").read_text("utf-8"))
        items = [p for p in data["paths"] if isinstance(p, dict) and "_path" in p]
    except (OSError, ValueError, KeyError, TypeError):
        return [Problem("info/paths.json", "record", package, "unreadable")]
    root = str(entry) + os.sep
    problems = []
    for item in items:
        rel = str(item["_path"])
        st = _lstat(root + rel)
        if st is None:
            problems.append(Problem(rel, "missing", package))
        elif item.get("path_type", "hardlink") == "hardlink" and stat.S_ISREG(st.st_mode):
            size = item.get("size_in_bytes")
            if isinstance(size, int) and st.st_size != size:
                problems.append(
                    Problem(rel, "size", package, f"{st.st_size} bytes, recorded {size}")
                )
            elif full and isinstance(item.get("sha256"), str):
                digest = _sha256(root + rel)
                if digest is None or digest.hex() != str(item["sha256"]).lower():
                    problems.append(Problem(rel, "hash", package, "differs from the archive"))
    return problems


# -- envs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnvCheck:
    """The verdict on one env's prefix: ``ok``, ``damaged`` (with problems) or not installed."""

    env: str
    state: EnvState
    prefix: Path | None = None
    problems: tuple[Problem, ...] = ()
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Nothing to repair."""
        return self.state == "ok"

    def lines(self, *, limit: int | None = 20) -> list[str]:
        """What ``cema verify`` prints for this env (at most ``limit`` problems)."""
        head = f"{self.env}: {self.state}" + (f" ({self.detail})" if self.detail else "")
        shown = self.problems if limit is None else self.problems[:limit]
        more = len(self.problems) - len(shown)
        tail = [f"  ... and {more} more (-v shows all)"] if more else []
        return [head, *(f"  {p}" for p in shown), *tail]


def check_env(store: Store, env: str, address: str | None, *, full: bool = False) -> EnvCheck:
    """Verify the prefix env ``env`` was last synced to (``address``: None if never)."""
    if address is None:
        return EnvCheck(env, "not installed", detail="never synced")
    prefix = store.prefix(address)
    receipt_path = prefix / RECEIPT_NAME
    try:
        receipt = Receipt.from_json(receipt_path.read_text("utf-8"))
    except OSError:
        return EnvCheck(env, "not installed", prefix, detail=f"no receipt in {prefix}")
    except (ValueError, KeyError, TypeError) as exc:
        why = f"it has no {exc} field" if isinstance(exc, KeyError) else str(exc)
        detail = f"its receipt {receipt_path} is refused: {why}"
        return EnvCheck(env, "damaged", prefix, detail=detail)
    if receipt.address != address:
        detail = f"its receipt {receipt_path} names another prefix"
        return EnvCheck(env, "damaged", prefix, detail=detail)
    problems = tuple(verify_prefix(prefix, full=full))
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {prefix}"
        return EnvCheck(env, "damaged", prefix, problems, detail=count)
    return EnvCheck(env, "ok", prefix)


def summary(checks: Iterable[EnvCheck]) -> str | None:
    """The closing error sentence of ``cema verify``, or None when every env is ok."""
    bad = [c for c in checks if not c.ok]
    if not bad:
        return None
    damaged = sum(c.state == "damaged" for c in bad)
    missing = len(bad) - damaged
    parts = [
        f"{n} env{'s' if n != 1 else ''} {what}"
        for n, what in ((damaged, "damaged"), (missing, "not installed"))
        if n
    ]
    return f"{' and '.join(parts)}; run `cema sync` to rebuild them."


__all__ = [
    "EnvCheck",
    "Problem",
    "ProblemKind",
    "check_env",
    "damaged_cache_dirs",
    "site_packages",
    "summary",
    "verify_cache_entry",
    "verify_prefix",
]
