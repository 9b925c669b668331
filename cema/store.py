"""The store: layout, receipts, per-prefix file locks, project registrations and inventory."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from cema._fs import (
    MiB,
    atomic_write,
    file_lock,
    read_capped,
    read_text_capped,
    stat_signature,
)
from cema._paths import default_home
from cema.model.receipt import Receipt

RECEIPT_NAME = ".cema-receipt.json"
#: receipts and registrations are read with this cap (never blocking on a FIFO or a device)
_RECORD_LIMIT = 16 * MiB
PREFIX_LOCK_TIMEOUT_S = 1800.0


def _alive(pid: int) -> bool:
    if sys.platform == "win32":  # no cheap check without extra dependencies: assume alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def venv_python(prefix: Path) -> Path:
    """The interpreter inside a venv or conda prefix."""
    if sys.platform == "win32":
        return prefix / ("Scripts" if (prefix / "pyvenv.cfg").exists() else "") / "python.exe"
    return prefix / "bin" / "python"


def default_store_root() -> Path:
    """``$CEMA_HOME``, else the user cache dir (``~/.cache/cema`` on Linux)."""
    return default_home()


@dataclass(frozen=True, kw_only=True, slots=True)
class Registration:
    """A project that synced into this store: its lock and which prefix each env points at."""

    lock: str
    envs: Mapping[str, str] = field(default_factory=dict)
    #: addresses a running sync is building: referenced before they exist, so gc spares them
    pending: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, text: str) -> Registration:
        """Parse a registration file (``ValueError``/``KeyError``/``TypeError`` if corrupt)."""
        data = json.loads(text)
        return cls(
            lock=str(data["lock"]),
            envs={str(k): str(v) for k, v in data["envs"].items()},
            pending=tuple(str(a) for a in data.get("pending", ())),
        )


class Store:
    """A folder holding the package cache, published prefixes, staging and registrations."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser().resolve() if root else default_store_root()
        self._checked: dict[str, list[int]] | None = None  # see is_ready
        self._checked_changed = False

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # layout
    @property
    def package_cache(self) -> Path:
        """The conda package cache shared by every prefix."""
        return self.root / "pkgs"

    def builder_cache(self, builder: str) -> Path:
        """The package cache of a builder: rattler's is ``pkgs``; micromamba keeps its own
        layout under its root prefix ``micromamba`` (its ``pkgs`` inside)."""
        return self.package_cache if builder == "rattler" else self.root / builder

    @property
    def envs_dir(self) -> Path:
        """Where published prefixes live, one per content address."""
        return self.root / "envs"

    def prefix(self, address: str) -> Path:
        """The published prefix for a content address."""
        return self.envs_dir / address

    def new_staging(self, address: str) -> Path:
        """A fresh staging folder on the same filesystem as the prefixes (for the rename)."""
        staging = self.root / "staging" / f"{address}.{os.urandom(4).hex()}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        return staging

    # receipts
    def receipt(self, address: str) -> Receipt | None:
        """The receipt of a ready prefix, or None: a missing or corrupt receipt means not ready."""
        try:
            text = read_text_capped(self.prefix(address) / RECEIPT_NAME, _RECORD_LIMIT)
            receipt = Receipt.from_json(text)
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None
        return receipt if receipt.address == address else None

    def write_receipt(self, prefix: Path, receipt: Receipt) -> None:
        """Write the receipt atomically: the last step of building a prefix."""
        atomic_write(prefix / RECEIPT_NAME, receipt.to_json())
        if prefix.parent == self.envs_dir:  # known sound: the next sync need not read it
            self._checked = None  # other processes may have added theirs since we read it
            self.is_ready(prefix.name)
            self.save_checked()

    @property
    def _checked_file(self) -> Path:
        return self.root / "cache" / "receipts.json"

    def is_ready(self, address: str) -> bool:
        """Whether the prefix at ``address`` is complete (has a sound receipt).

        A receipt read and checked before is known by its stat (size, mtime, inode, ctime:
        any write or replacement changes the ctime, which no tool can set back), so a no-op
        sync pays one ``stat`` per prefix; ``save_checked`` keeps what this process learned.
        """
        try:
            stamp = stat_signature(self.prefix(address) / RECEIPT_NAME)
        except OSError:
            return False
        if self._checked is None:
            try:
                loaded = json.loads(read_capped(self._checked_file, _RECORD_LIMIT))
                self._checked = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._checked = {}
        if self._checked.get(address) == stamp:
            return True
        if self.receipt(address) is None:
            return False
        self._checked[address] = stamp
        self._checked_changed = True
        return True

    def ready_witnesses(
        self, lock_path: Path, addresses: Sequence[str]
    ) -> dict[str, list[int]] | None:
        """The files whose signatures vouch that these prefixes are ready for that project.

        Each receipt with the signature it was checked at, and the project's registration;
        None when a prefix is not ready or the project has no registration (``cema.stamp``).
        """
        out: dict[str, list[int]] = {}
        for address in addresses:
            if not self.is_ready(address) or self._checked is None:
                return None
            out[str(self.prefix(address) / RECEIPT_NAME)] = self._checked[address]
        try:
            path = self._registration_path(lock_path)
            out[str(path)] = stat_signature(path)
        except OSError:
            return None
        return out

    def save_checked(self) -> None:
        """Keep the stats of the receipts checked by ``is_ready`` (best effort: a cache)."""
        if not self._checked_changed or self._checked is None:
            return
        try:
            self._checked_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self._checked_file, json.dumps(self._checked), durable=False)
            self._checked_changed = False
        except OSError:  # a read-only store only costs speed
            pass

    def inventory(self) -> dict[str, Receipt]:
        """Every ready prefix in the store, by address."""
        out: dict[str, Receipt] = {}
        if not self.envs_dir.is_dir():
            return out
        for entry in os.scandir(self.envs_dir):
            receipt = self.receipt(entry.name)
            if receipt is not None:
                out[entry.name] = receipt
        return out

    # locking
    @contextlib.contextmanager
    def prefix_lock(
        self, address: str, *, timeout_s: float = PREFIX_LOCK_TIMEOUT_S
    ) -> Iterator[None]:
        """Hold the cross-process lock of one prefix."""
        with file_lock(
            self.root / "locks" / f"{address}.lock",
            timeout_s=timeout_s,
            busy=f"another process has been building {self.prefix(address)} for {timeout_s:.0f} s.",
            hint="wait for it to finish, or stop it and run `cema sync` again.",
        ):
            yield

    def discard_cached_package(self, folder: Path) -> None:
        """Remove one extracted package from the package cache (it is extracted again on use).

        Only a folder inside this store's package caches is ever removed, whatever a prefix's
        records claim.
        """
        folder = folder.resolve()
        caches = {
            self.package_cache.resolve(),
            (self.builder_cache("micromamba") / "pkgs").resolve(),
        }
        if folder.parent in caches and folder.is_dir() and not folder.is_symlink():
            self.discard(folder)

    def discard(self, path: Path) -> None:
        """Move a half-built or removed prefix out of the way, then delete it (best effort)."""
        if not path.exists():
            return
        trash = self.root / "trash" / f"{path.name}.{os.urandom(4).hex()}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, trash)
        except OSError:
            trash = path
        import shutil  # not on a no-op's import path

        shutil.rmtree(trash, ignore_errors=True)

    def remove_unreferenced(self, address: str, *, excluding: Path | None = None) -> bool:
        """Remove a prefix unless a project (other than ``excluding``'s) or a worker uses it.

        The check runs again under the prefix's lock, after which no sync can start using it
        unseen (a sync registers what it will use before it reads the store).
        """
        with self.prefix_lock(address):
            if address in self.referenced(excluding=excluding) | self.pinned():
                return False
            (self.prefix(address) / RECEIPT_NAME).unlink(missing_ok=True)
            self.discard(self.prefix(address))
        return True

    # registrations (gc roots)
    def _registration_path(self, lock_path: Path) -> Path:
        key = xxhash.xxh3_64_hexdigest(str(lock_path.resolve()).encode("utf-8"))
        return self.root / "projects" / f"{key}.json"

    def registration(self, lock_path: Path) -> Registration | None:
        """What the project whose lock is at ``lock_path`` synced last, if anything."""
        try:
            text = read_text_capped(self._registration_path(lock_path), _RECORD_LIMIT)
            return Registration.from_json(text)
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None

    def register(
        self, lock_path: Path, envs: Mapping[str, str], *, pending: Sequence[str] = ()
    ) -> None:
        """Record (atomically) which prefix each env of a project points at now."""
        path = self._registration_path(lock_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "lock": str(lock_path.resolve()),
            "envs": dict(sorted(envs.items())),
            "pending": sorted(set(pending)),
        }
        atomic_write(path, json.dumps(data, indent=1))

    def update_registration(
        self,
        lock_path: Path,
        *,
        keep: Container[str] | None = None,
        set_envs: Mapping[str, str] | None = None,
        add_pending: Sequence[str] = (),
        drop_pending: Sequence[str] = (),
    ) -> None:
        """Read, change and write a project's registration under its file lock.

        Envs not in ``keep`` (no longer locked; None keeps all) are dropped; concurrent syncs
        of one project (``cema sync -e a`` beside ``-e b``) never lose each other's entries.
        A change that changes nothing writes nothing (and takes no lock): a no-op sync is
        read-only.
        """

        def updated(current: Registration | None) -> tuple[dict[str, str], list[str]]:
            envs = {
                k: v
                for k, v in (current.envs if current else {}).items()
                if keep is None or k in keep
            }
            envs.update(set_envs or {})
            pending = [a for a in (current.pending if current else ()) if a not in drop_pending]
            return envs, sorted({*pending, *add_pending})

        def same(current: Registration | None, envs: dict[str, str], pending: list[str]) -> bool:
            return (
                current is not None
                and dict(current.envs) == envs
                and sorted(set(current.pending)) == pending
            )

        current = self.registration(lock_path)
        if same(current, *updated(current)):
            return
        path = self._registration_path(lock_path)
        with file_lock(path.with_name(path.name + ".lock"), timeout_s=PREFIX_LOCK_TIMEOUT_S):
            current = self.registration(lock_path)
            envs, pending = updated(current)
            if not same(current, envs, pending):
                self.register(lock_path, envs, pending=pending)

    def registrations(self) -> list[Registration]:
        """Every project registered in this store whose lock file still exists."""
        out: list[Registration] = []
        folder = self.root / "projects"
        if not folder.is_dir():
            return out
        for entry in sorted(folder.glob("*.json")):
            if entry.name.endswith(".tmp"):
                continue
            try:
                reg = Registration.from_json(read_text_capped(entry, _RECORD_LIMIT))
            except (OSError, ValueError, KeyError, TypeError, RecursionError):
                continue
            if Path(reg.lock).exists():
                out.append(reg)
            else:
                entry.unlink(missing_ok=True)
        return out

    def referenced(self, *, excluding: Path | None = None) -> set[str]:
        """Addresses some registered project points at (optionally not counting one project)."""
        skip = str(excluding.resolve()) if excluding else None
        return {
            address
            for reg in self.registrations()
            if reg.lock != skip
            for address in (*reg.envs.values(), *reg.pending)
        }

    # pins: prefixes a running worker uses (never removed under it)
    def pin(self, address: str) -> Path:
        """Mark ``address`` as in use by this process until ``unpin``; returns the pin file."""
        folder = self.root / "pins" / address
        folder.mkdir(parents=True, exist_ok=True)
        import socket

        pin = folder / f"{socket.gethostname()}@{os.getpid()}@{os.urandom(4).hex()}"
        pin.touch()
        return pin

    @staticmethod
    def unpin(pin: Path) -> None:
        """Remove a pin made by ``pin``."""
        pin.unlink(missing_ok=True)

    def pinned(self) -> set[str]:
        """Addresses some live process has pinned (stale pins of dead local processes go)."""
        out: set[str] = set()
        folder = self.root / "pins"
        if not folder.is_dir():
            return out
        import socket

        host = socket.gethostname()
        for address in folder.iterdir():
            for pin in address.iterdir():
                owner, _, rest = pin.name.partition("@")
                pid = rest.partition("@")[0]
                if owner == host and pid.isdigit() and not _alive(int(pid)):
                    pin.unlink(missing_ok=True)
                    continue
                out.add(address.name)  # a live process, or another host's (assume alive)
        return out

    def sweep_staging(self, *, older_than_s: float = 24 * 3600.0) -> None:
        """Delete what killed syncs left in staging, and whatever a killed delete left in the
        trash.

        A staging folder is only ever used under its prefix's lock (by Cema and by the bash
        scripts alike): one whose lock is free has no live builder, and only those go, however
        recent (``older_than_s`` spares younger ones anyway).
        """
        import shutil

        from cema.errors import EnvBusyError

        now = time.time()
        for name, age_s in (("staging", older_than_s), ("trash", 0.0)):
            folder = self.root / name
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                with contextlib.suppress(OSError, EnvBusyError):
                    if now - entry.stat().st_mtime < age_s:
                        continue
                    if name == "trash":
                        shutil.rmtree(entry, ignore_errors=True)
                        continue
                    address = entry.name.partition(".")[0]
                    with self.prefix_lock(address, timeout_s=0):
                        shutil.rmtree(entry, ignore_errors=True)


__all__ = [
    "PREFIX_LOCK_TIMEOUT_S",
    "RECEIPT_NAME",
    "Registration",
    "Store",
    "default_store_root",
    "venv_python",
]
