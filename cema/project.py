"""A project as commands see it: its spec, its lock beside it, its store; lock, plan and sync."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import xxhash

from cema._fs import stat_signature
from cema._paths import find_spec_file
from cema.engines import Builder, Reporter, Solver, default_solver, get_builder
from cema.errors import CemaError, LockError
from cema.model.lock import LOCK_FILENAME, Lockfile, check_fresh, stale_envs
from cema.model.lockio import read_lock, write_lock
from cema.model.plan import Plan
from cema.model.spec import (
    LinkMode,
    ProjectSpec,
    current_platform,
    dump_project,
    load_project,
)
from cema.store import Store
from cema.sync import Resolved, SyncResult, plan_sync, resolve_targets, sync_lock

if TYPE_CHECKING:
    from cema.engines.micromamba.script import Script, Shell
    from cema.model.lockdiff import LockDiff

log = logging.getLogger(__name__)
SyncMode = Literal["auto", "locked", "frozen"]


class Project:
    """A ``cema.yaml`` with its ``cema.lock`` and the store its envs are built in."""

    def __init__(
        self,
        spec: ProjectSpec,
        *,
        lock_path: Path | None = None,
        store: Store | Path | str | None = None,
        engine: Builder | str | None = None,
        solver: Solver | None = None,
    ) -> None:
        self.spec = spec
        if isinstance(store, Store):
            self.store = store
        elif store is not None:
            self.store = Store(store)
        elif spec.store:
            self.store = Store(spec.root / Path(spec.store).expanduser())
        else:
            self.store = Store()
        if lock_path is None and spec.path is None:
            # a spec given as data has no folder of its own: never touch ./cema.lock, keep
            # its lock in the store, keyed by its content
            key = xxhash.xxh3_64_hexdigest(dump_project(spec).encode("utf-8"))
            lock_path = self.store.root / "inline" / f"spec-{key}" / LOCK_FILENAME
            lock_path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_path = (lock_path or spec.root / LOCK_FILENAME).resolve()
        self._builder = engine
        self._solver = solver
        self.platform = current_platform()
        #: the signature of cema.lock as the last whole-project sync used it, if fresh
        self.fresh_lock_signature: list[int] | None = None
        #: what the last resolution (``lock``, or a re-lock by ``sync``/``plan``) changed
        self.last_lock_diff: LockDiff | None = None

    @classmethod
    def load(
        cls,
        path: Path | str | None = None,
        *,
        store: Store | Path | str | None = None,
        engine: Builder | str | None = None,
    ) -> Project:
        """Find and read ``cema.yaml`` (``path``: a file or a folder; default: the cwd upwards)."""
        return cls(
            load_project(find_spec_file(Path(path) if path else None)), store=store, engine=engine
        )

    @property
    def builder(self) -> Builder:
        """What builds this project's prefixes (``engine`` in cema.yaml, ``--engine``)."""
        if self._builder is None or isinstance(self._builder, str):
            self._builder = get_builder(self._builder or self.spec.engine)
        return self._builder

    @property
    def solver(self) -> Solver:
        """What resolves this project's specs (the embedded solver, whatever builds)."""
        if self._solver is None:
            self._solver = default_solver()
        return self._solver

    def read_lock(self) -> Lockfile:
        """The project's lock (``LockError`` if there is none or it is corrupt)."""
        return read_lock(self.lock_path, cache_dir=self._lock_cache)

    @property
    def _lock_cache(self) -> Path:
        return self.store.root / "cache" / "locks"

    def _previous_lock(self, *, strict: bool) -> Lockfile:
        """The current lock, or an empty one where there is none.

        A lock that exists but is corrupt or hand-edited is an error when ``strict`` (a sync
        must never quietly replace it), and is resolved again from scratch by ``cema lock``.
        """
        if not self.lock_path.exists():
            return Lockfile(path=self.lock_path)
        try:
            # `cema lock` keeps the pins of a lock an older Cema wrote (no records-hashes)
            return read_lock(self.lock_path, cache_dir=self._lock_cache, older=not strict)
        except LockError:
            if strict:
                raise
            log.warning("%s is unreadable: resolving every environment again", self.lock_path)
            return Lockfile(path=self.lock_path)

    # -- commands -----------------------------------------------------------------------------

    def check(self, names: Sequence[str] = ()) -> Lockfile:
        """The lock, if it matches ``cema.yaml`` (no solving); else ``StaleLockError``."""
        lock = self.read_lock()
        check_fresh(self.spec, lock, names)
        return lock

    def resolve(
        self,
        *,
        names: Sequence[str] = (),
        upgrade: Sequence[str] | bool = False,
        reporter: Reporter | None = None,
    ) -> Lockfile:
        """The lock ``lock`` would write, in memory only (``last_lock_diff`` says what moved;
        ``reporter`` is told of each solve)."""
        from cema.model.lockdiff import diff_locks
        from cema.resolve import lock_project

        previous = self._previous_lock(strict=False)
        lock = lock_project(
            self.spec,
            solver=self.solver,
            previous=previous,
            names=names,
            upgrade=upgrade,
            reporter=reporter,
        )
        # envs no longer declared leave the lock
        lock = lock.with_envs(e for e in lock.envs.values() if e.name in self.spec.environments)
        self.last_lock_diff = diff_locks(previous, lock)
        return lock

    def lock(
        self,
        *,
        names: Sequence[str] = (),
        upgrade: Sequence[str] | bool = False,
        reporter: Reporter | None = None,
    ) -> Lockfile:
        """Resolve what changed (or what ``upgrade`` names) and write ``cema.lock`` atomically."""
        lock = self.resolve(names=names, upgrade=upgrade, reporter=reporter)
        write_lock(lock, self.lock_path, cache_dir=self._lock_cache)
        return self.read_lock()

    def _lock_for_sync(
        self,
        names: Sequence[str],
        mode: SyncMode,
        *,
        write: bool = True,
        reporter: Reporter | None = None,
    ) -> Lockfile:
        """The lock to sync from; in ``auto`` mode stale envs are resolved again first (and
        written unless ``write`` is False: ``cema plan`` shows what ``sync`` would do)."""
        for name in names:
            self.spec.env(name)  # unknown names fail first, with a suggestion
        if mode == "frozen":
            return self.read_lock()
        if mode == "locked":
            return self.check(names)
        lock = self._previous_lock(strict=True)
        stale = (
            stale_envs(self.spec, lock, names)
            if lock.envs or names
            else list(self.spec.environments)
        )
        if stale or not self.lock_path.exists():
            log.info("cema.lock is out of date for %s: locking", ", ".join(stale) or "all")
            relock = self.lock if write else self.resolve
            lock = relock(names=stale, reporter=reporter)
        return lock

    def _fresh_signature(self, lock: Lockfile) -> list[int] | None:
        """The lock file's signature if ``lock`` matches cema.yaml (a ``--frozen`` sync may use a
        stale one, an ``auto`` one may keep envs no longer declared), else None."""
        try:
            check_fresh(self.spec, lock)
            return stat_signature(self.lock_path)
        except (CemaError, OSError):
            return None

    def links(self, names: Sequence[str], link: LinkMode | None = None) -> dict[str, LinkMode]:
        """Each env's link mode: ``link`` when given (``--link``), else its own in cema.yaml."""
        if link is not None and link not in get_args(LinkMode):
            raise ValueError(f"unknown link mode {link!r}: use hardlink or copy")
        return {name: link or self.spec.env(name).link for name in names}

    def targets(
        self, lock: Lockfile, names: Sequence[str] = (), *, link: LinkMode | None = None
    ) -> list[Resolved]:
        """Each selected env's content and prefix address on this machine."""
        selected = list(names) or sorted(self.spec.environments)
        links = self.links(selected, link)  # unknown names fail here with a suggestion
        return resolve_targets(lock, selected, platform=self.platform, link=links)

    def plan(
        self,
        *,
        names: Sequence[str] = (),
        prune: bool = False,
        mode: SyncMode = "frozen",
        link: LinkMode | None = None,
    ) -> Plan:
        """What ``sync`` would do, without doing it (``auto``: re-locked in memory, not written)."""
        lock = self._lock_for_sync(names, mode, write=False)
        return plan_sync(self.store, lock, self.targets(lock, names, link=link), prune=prune)

    def script(
        self,
        shell: Shell,
        *,
        names: Sequence[str] = (),
        prune: bool = False,
        link: LinkMode | None = None,
    ) -> Script:
        """The plan as a micromamba script for ``shell`` (``cema plan --script``)."""
        import time

        from cema.engines.micromamba.script import render_script

        lock = self.check(names)
        resolved = self.targets(lock, names, link=link)
        plan = plan_sync(self.store, lock, resolved, prune=prune)
        return render_script(
            plan, resolved, store_root=str(self.store.root), shell=shell, created=time.time()
        )

    def sync(
        self,
        *,
        names: Sequence[str] = (),
        mode: SyncMode = "auto",
        prune: bool = False,
        reporter: Reporter | None = None,
        verify: bool = False,
        link: LinkMode | None = None,
    ) -> SyncResult:
        """Make the store match the lock for the selected envs (all by default).

        ``verify``: check the files of the prefixes it reuses; damaged ones are built again.
        ``link``: ``hardlink`` or ``copy`` for every selected env this time, instead of the
        ``link`` each has in cema.yaml (``cema sync --link copy``).
        """
        lock = self._lock_for_sync(names, mode, reporter=reporter)
        if not names:  # what a no-op stamp may vouch for (``cema.stamp``)
            self.fresh_lock_signature = self._fresh_signature(lock)
        selected = list(names) or sorted(self.spec.environments)
        links = self.links(selected, link)
        return sync_lock(
            self.store,
            lock,
            selected,
            platform=self.platform,
            builder=lambda: self.builder,
            prune=prune,
            reporter=reporter,
            verify=verify,
            link=links,
        )

    def prefix(self, name: str) -> Path:
        """The prefix env ``name`` was last synced to (``EnvError`` if never)."""
        from cema.errors import EnvNotFoundError

        self.spec.env(name)
        registration = self.store.registration(self.lock_path)
        address = registration.envs.get(name) if registration else None
        if address is None or not self.store.is_ready(address):
            raise EnvNotFoundError(
                f"environment {name!r} has not been synced into {self.store.root}.",
                hint=f"run `cema sync -e {name}`.",
            )
        return self.store.prefix(address)


__all__ = [
    "Project",
    "SyncMode",
    "find_spec_file",
]
