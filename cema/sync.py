"""Run a plan through a builder: staging, publish by rename, pip layer, receipt last, locked."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cema.engines.builder import Builder, BuildStep, NullReporter, Reporter
from cema.model.hashing import prefix_address, venv_address
from cema.model.lock import LockedEnv, LockedPlatform, Lockfile
from cema.model.plan import Action, Create, Plan, Remove, Reuse, Target, Update, make_plan
from cema.model.receipt import Receipt
from cema.store import Store

if TYPE_CHECKING:
    from cema.engines import uv

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Resolved:
    """One env's target for this machine: its locked content and its prefix address."""

    env: str
    content: LockedPlatform
    address: str
    interpreter: uv.Interpreter | None = None
    #: ``hardlink`` (files shared with the package caches) or ``copy``: part of ``address``
    link: str = "hardlink"

    def target(self) -> Target:
        """The planner's view of it."""
        return Target(
            env=self.env,
            address=self.address,
            kind=self.content.kind,
            packages=_Packages(self.content),
            builds=_Packages(self.content, builds=True),
        )


class _Packages(Mapping[str, str]):
    """Name → version of locked content (``builds``: conda name → build), built on first use.

    Only an update's diff needs it: a no-op sync never builds the records.
    """

    def __init__(self, content: LockedPlatform, *, builds: bool = False) -> None:
        self._content = content
        self._builds = builds
        self._versions: dict[str, str] | None = None

    def _get(self) -> dict[str, str]:
        if self._versions is None:
            if self._builds:
                self._versions = {r.name: r.build for r in self._content.conda}
            else:
                self._versions = {r.name: r.version for r in self._content.conda}
                self._versions.update({r.name: r.version for r in self._content.pip})
        return self._versions

    def __getitem__(self, name: str) -> str:
        return self._get()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def resolve_targets(
    lock: Lockfile,
    names: Sequence[str],
    *,
    platform: str,
    download_python: bool = True,
    link: Mapping[str, str] | None = None,
) -> list[Resolved]:
    """The locked content and address of each env on ``platform`` (venvs: with interpreter).

    ``link``: env name → link mode, ``hardlink`` where not given (the lock has none: it is how
    this machine installs the content, not what the content is).
    """
    out = []
    for name in names:
        locked: LockedEnv = lock.env(name)
        content = locked.for_platform(platform)
        interpreter = None
        address = content.content_hash
        if content.kind == "venv":
            from cema.engines import uv

            interpreter = uv.find_interpreter(locked.python, download=download_python)
            address = venv_address(address, interpreter.identity)
        mode = (link or {}).get(name, "hardlink")
        out.append(
            Resolved(
                env=name,
                content=content,
                address=prefix_address(address, mode),
                interpreter=interpreter,
                link=mode,
            )
        )
    return out


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncResult:
    """What a sync did: its plan and the prefix each env now points at."""

    plan: Plan
    prefixes: Mapping[str, Path] = field(default_factory=dict)


def plan_sync(
    store: Store,
    lock: Lockfile,
    resolved: Sequence[Resolved],
    *,
    prune: bool = False,
) -> Plan:
    """Read the store (receipts only, never package files) and make the plan."""
    registration = store.registration(lock.path) if lock.path else None
    last = dict(registration.envs) if registration else {}
    addresses = {r.address for r in resolved} | set(last.values())
    ready = _Ready(store, addresses)
    selected = {r.env for r in resolved}
    # envs not synced this time but still locked keep their prefixes
    kept = {a for env, a in last.items() if env not in selected and env in lock.envs}
    elsewhere = (
        store.referenced(excluding=lock.path) | store.pinned() if prune and lock.path else set()
    )
    plan = make_plan(
        [r.target() for r in resolved],
        ready=ready,
        last_synced=last,
        referenced_elsewhere=elsewhere | kept,
        prune=prune,
    )
    store.save_checked()
    return plan


def _repair_damaged(store: Store, plan: Plan) -> Plan:
    """Move damaged prefixes the plan reuses out of the way: the plan then builds them."""
    from dataclasses import replace

    from cema.verify import damaged_cache_dirs, verify_prefix

    actions: list[Action] = []
    for action in plan.actions:
        if isinstance(action, Reuse | Update) and not (isinstance(action, Update) and action.build):
            prefix = store.prefix(action.address)
            problems = verify_prefix(prefix)
            if problems:
                log.warning(
                    "%s is damaged (%s%s): building it again",
                    prefix,
                    problems[0],
                    f" and {len(problems) - 1} more" if len(problems) > 1 else "",
                )
                receipt = store.receipt(action.address)
                with store.prefix_lock(action.address):
                    # hard links: a file changed in the prefix changed its cached copy too
                    # (a copied prefix shares no file with the cache)
                    shared = receipt is None or receipt.link == "hardlink"
                    for folder in damaged_cache_dirs(prefix, problems) if shared else ():
                        store.discard_cached_package(folder)
                    store.discard(prefix)
                if isinstance(action, Update):
                    actions.append(replace(action, build=True))
                else:
                    actions.append(Create(env=action.env, address=action.address, kind=action.kind))
                continue
        actions.append(action)
    return Plan(actions=tuple(actions))


class _Ready(Mapping[str, Receipt]):
    """The ready prefixes among ``addresses``: membership is one stat, a receipt read on use."""

    def __init__(self, store: Store, addresses: set[str]) -> None:
        self._store = store
        self._addresses = addresses
        self._known: dict[str, bool] = {}

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str) or address not in self._addresses:
            return False
        if address not in self._known:
            self._known[address] = self._store.is_ready(address)
        return self._known[address]

    def __getitem__(self, address: str) -> Receipt:
        receipt = self._store.receipt(address) if address in self else None
        if receipt is None:
            raise KeyError(address)
        return receipt

    def __iter__(self) -> Iterator[str]:
        return (a for a in sorted(self._addresses) if a in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _clear_leftovers(store: Store, address: str) -> None:
    """Remove what a killed build of ``address`` left (we hold its lock: nobody else builds it)."""
    final = store.prefix(address)
    if final.exists():
        log.info("removing the incomplete prefix %s left by an interrupted sync", final)
        store.discard(final)
    staging_dir = store.root / "staging"
    if staging_dir.is_dir():
        for leftover in staging_dir.glob(f"{address}.*"):
            import shutil  # not on a no-op's import path

            shutil.rmtree(leftover, ignore_errors=True)


def run_install_commands(
    prefix: Path, commands: Sequence[str], *, env: Mapping[str, str], name: str
) -> None:
    """Run an env's install commands in its activated prefix (before its receipt is written)."""
    for command in commands:
        argv = (
            ["cmd.exe", "/d", "/c", command]
            if sys.platform == "win32"
            else ["/bin/sh", "-c", command]
        )
        from cema import _proc

        _proc.run(
            argv,
            what=f"the install command {command!r} of environment {name!r}",
            env=env,
            cwd=prefix,
            hint="fix the command in `install_commands`; nothing was published.",
        )


def build_prefix(store: Store, item: Resolved, *, builder: Builder, reporter: Reporter) -> Path:
    """Build and publish one prefix, unless another process did it while we waited."""
    from cema import activation
    from cema.engines import uv

    final = store.prefix(item.address)
    with store.prefix_lock(item.address):
        if store.receipt(item.address) is not None:
            log.info("%s was built by another sync meanwhile", final)
            return final
        _clear_leftovers(store, item.address)
        staging = store.new_staging(item.address)
        content = item.content
        log.info("building %s (%s) at %s", item.env, content.kind, final)
        try:
            if content.kind == "venv":
                assert item.interpreter is not None
                uv.create_venv(item.interpreter, staging)
            else:
                step = BuildStep(
                    env=item.env,
                    records=content.conda,
                    platform=content.platform,
                    staging=staging,
                    final=final,
                    package_cache=store.builder_cache(builder.name),
                    link=item.link,
                )
                builder.build(step=step, reporter=reporter)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, final)
        except BaseException:
            import shutil  # not on a no-op's import path

            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            # the pip layer goes in after publish so its scripts name the final path
            # activation scripts run once, here; the pip layer then installs in the activated env
            activation.write_activation_cache(final, content.kind)
            env = activation.activated_environ(final, kind=content.kind, name=item.env)
            # uv hard-links from its cache by default (on Linux): a copy env gets copies
            pip_env = {**env, "UV_LINK_MODE": "copy"} if item.link == "copy" else env
            uv.install_pip(final, content.pip, env=pip_env)
            # install commands get what the address covers: CEMA_ENV and the spec's variables
            commands_env = {**env, **dict(content.commands_env)}
            run_install_commands(final, content.commands, env=commands_env, name=item.env)
            store.write_receipt(
                final,
                Receipt.of(
                    content,
                    address=item.address,
                    interpreter=item.interpreter.version if item.interpreter else None,
                    engine=builder.name,
                    created=time.time(),
                    link=item.link,
                ),
            )
        except BaseException:
            store.discard(final)
            raise
    return final


def apply_plan(
    store: Store,
    lock: Lockfile,
    plan: Plan,
    resolved: Sequence[Resolved],
    *,
    builder: Builder | None,
    reporter: Reporter | None = None,
) -> SyncResult:
    """Carry out ``plan``: build what is missing, remove what was pruned, register the project.

    ``builder`` may be None when the plan builds nothing.
    """
    reporter = reporter or NullReporter()
    by_env = {r.env: r for r in resolved}
    for action in plan.actions:
        if isinstance(action, Update):
            change = "; ".join(action.diff.lines()) or "no package changes"
            log.info("updating %s to %s: %s", action.env, store.prefix(action.address), change)
    for action in plan.actions:
        match action:
            case Create() | Update(build=True):
                if builder is None:
                    raise ValueError("this plan builds prefixes: a builder is required")
                started = time.monotonic()
                reporter.building(env=action.env)
                build_prefix(store, by_env[action.env], builder=builder, reporter=reporter)
                reporter.built(env=action.env, seconds=time.monotonic() - started)
            case Remove(address=address):
                # re-checked under the prefix's lock: another project may have started using it
                if store.remove_unreferenced(address, excluding=lock.path):
                    log.info("removed %s", store.prefix(address))
    prefixes = {r.env: store.prefix(r.address) for r in resolved}
    if lock.path is not None:
        store.update_registration(
            lock.path, keep=lock.envs, set_envs={r.env: r.address for r in resolved}
        )
    return SyncResult(plan=plan, prefixes=prefixes)


def sync_lock(
    store: Store,
    lock: Lockfile,
    names: Sequence[str],
    *,
    platform: str,
    builder: Builder | Callable[[], Builder],
    prune: bool = False,
    reporter: Reporter | None = None,
    verify: bool = False,
    link: Mapping[str, str] | None = None,
) -> SyncResult:
    """Make ``store`` match ``lock`` for ``names``, with no solve (what ``--frozen`` does).

    ``verify``: check the files of every prefix it would reuse (``cema verify``'s fast check)
    and build a damaged one again, with fresh copies of the packages it shares.
    ``link``: env name → ``hardlink`` (the default) or ``copy`` (see ``resolve_targets``).

    ``builder`` may be a factory: a no-op sync never loads it (importing rattler is most of the
    cost of a no-op sync).
    """
    resolved = resolve_targets(lock, names, platform=platform, link=link)
    registration = store.registration(lock.path) if lock.path is not None else None
    # what this project already points at is referenced: only new addresses need the mark
    known = set(registration.envs.values()) if registration else set()
    pending = sorted({r.address for r in resolved} - known)
    if lock.path is not None and pending:
        # referenced before the store is read: a concurrent `cema gc` or `--prune` never
        # removes what this sync builds or decides to reuse
        store.update_registration(lock.path, add_pending=pending)
    try:
        plan = plan_sync(store, lock, resolved, prune=prune)
        if verify:
            plan = _repair_damaged(store, plan)
        chosen = (builder() if callable(builder) else builder) if plan.builds else None
        return apply_plan(store, lock, plan, resolved, builder=chosen, reporter=reporter)
    finally:
        if lock.path is not None and pending:
            store.update_registration(lock.path, drop_pending=pending)


__all__ = [
    "Resolved",
    "SyncResult",
    "apply_plan",
    "build_prefix",
    "plan_sync",
    "resolve_targets",
    "run_install_commands",
    "sync_lock",
]
