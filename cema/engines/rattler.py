"""The embedded engine: py-rattler solves and installs (the only module importing rattler)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import rattler
import rattler.exceptions as rattler_errors

from cema.engines.builder import BuildStep, Reporter
from cema.engines.rattler_progress import install_reporter
from cema.errors import DiskFullError, EngineError, SolveError
from cema.model.lock import CondaRecord
from cema.model.urls import file_url_path

log = logging.getLogger(__name__)
T = TypeVar("T")

#: what py-rattler raises for a spec it cannot parse
_SPEC_ERRORS = (
    rattler_errors.InvalidMatchSpecError,
    rattler_errors.InvalidPackageNameError,
    rattler_errors.InvalidVersionError,
    rattler_errors.InvalidVersionSpecError,
    rattler_errors.InvalidChannelError,
    rattler_errors.ParseSubdirError,
)
#: what py-rattler raises when a channel cannot be read (path, network, repodata)
_CHANNEL_ERRORS = (
    rattler_errors.GatewayError,
    rattler_errors.FetchRepoDataError,
    rattler_errors.IoError,
    rattler_errors.InvalidUrlError,
    rattler_errors.CacheDirError,
)

#: Virtual packages assumed when locking for a platform other than this machine's (as pixi does).
DEFAULT_GLIBC = "2.28"
DEFAULT_LINUX = "4.18"
DEFAULT_OSX = {"osx-64": "10.15", "osx-arm64": "11.0"}
_ARCHSPEC = {
    "64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "arm64",
    "ppc64le": "ppc64le",
}


def _run(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop | None = None) -> T:
    """Run a rattler coroutine from synchronous code (also inside a running event loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if loop is not None:
            return loop.run_until_complete(coro)
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _generic(name: str, version: str, build: str = "0") -> rattler.GenericVirtualPackage:
    return rattler.GenericVirtualPackage(
        rattler.PackageName(name), rattler.Version(version), rattler.BuildString(build)
    )


def virtual_packages(platform: str, host_platform: str) -> list[Any]:
    """Virtual packages to solve against: detected on this machine, assumed for others.

    ``CEMA_OVERRIDE_CUDA``, ``CEMA_OVERRIDE_GLIBC`` and ``CEMA_OVERRIDE_OSX`` override both
    (an empty ``CEMA_OVERRIDE_CUDA`` means no CUDA), like conda's ``CONDA_OVERRIDE_*``.
    """
    env = os.environ
    if platform == host_platform:
        overrides = rattler.VirtualPackageOverrides(
            cuda=rattler.Override.env_var("CEMA_OVERRIDE_CUDA"),
            libc=rattler.Override.env_var("CEMA_OVERRIDE_GLIBC"),
            osx=rattler.Override.env_var("CEMA_OVERRIDE_OSX"),
        )
        return [vp.into_generic() for vp in rattler.VirtualPackage.detect(overrides=overrides)]
    os_name, _, arch = platform.partition("-")
    out = []
    if os_name in ("linux", "osx"):
        out.append(_generic("__unix", "0"))
    if os_name == "linux":
        out.append(_generic("__linux", DEFAULT_LINUX))
        out.append(_generic("__glibc", env.get("CEMA_OVERRIDE_GLIBC") or DEFAULT_GLIBC))
    elif os_name == "osx":
        out.append(_generic("__osx", env.get("CEMA_OVERRIDE_OSX") or DEFAULT_OSX[platform]))
    elif os_name == "win":
        out.append(_generic("__win", "0"))
    if env.get("CEMA_OVERRIDE_CUDA"):
        out.append(_generic("__cuda", env["CEMA_OVERRIDE_CUDA"]))
    out.append(_generic("__archspec", "1", _ARCHSPEC.get(arch, arch)))
    return out


def _to_record(rec: Any) -> CondaRecord:
    # one call into rattler for the whole record: attribute by attribute costs twice as much
    data = json.loads(rec.to_json())
    noarch = data.get("noarch")
    return CondaRecord(
        name=str(data["name"]).lower(),  # rattler's normalized name
        version=str(data["version"]),
        build=str(data["build"]),
        build_number=int(data.get("build_number", 0)),
        subdir=str(data["subdir"]),
        noarch=noarch if noarch in ("python", "generic") else None,
        depends=tuple(data.get("depends", ())),
        constrains=tuple(data.get("constrains", ())),
        channel=str(data.get("channel") or ""),
        url=str(data["url"]),
        sha256=str(data.get("sha256") or ""),
        md5=data.get("md5"),
        size=data.get("size"),
        timestamp=data.get("timestamp"),
    )


def _from_record(rec: CondaRecord) -> Any:
    package = rattler.PackageRecord(
        name=rec.name,
        version=rec.version,
        build=rattler.BuildString(rec.build),
        build_number=rec.build_number,
        subdir=rec.subdir,
        noarch=rattler.NoArchType(rec.noarch) if rec.noarch else None,  # type: ignore[arg-type]
        depends=list(rec.depends),
        constrains=list(rec.constrains),
        sha256=bytes.fromhex(rec.sha256),
        md5=bytes.fromhex(rec.md5) if rec.md5 else None,
        size=rec.size,
    )
    if rec.timestamp is not None:
        package.timestamp = dt.datetime.fromtimestamp(rec.timestamp / 1000, tz=dt.timezone.utc)
    return rattler.RepoDataRecord(package, rec.file_name, rec.url, rec.channel)


def _in_package_cache(package_cache: Path, rec: CondaRecord) -> bool:
    """True when rattler's cache already holds this exact archive (so it will not read it).

    rattler keeps, beside each extracted package, a ``.lock`` file whose bytes 8-40 are the
    sha256 of the archive it came from. Any surprise in that format means "not cached": the
    archive is then hashed, which is slower but never wrong.
    """
    stem = f"{rec.name}-{rec.version}-{rec.build}"
    try:
        data = (package_cache / f"{stem}.lock").read_bytes()
    except OSError:
        return False
    return len(data) == 40 and data[8:].hex() == rec.sha256 and (package_cache / stem).is_dir()


def _cache_entry_damaged(package_cache: Path, rec: CondaRecord) -> bool:
    """Check a cached package before linking from it; a damaged one is removed (True).

    Prefixes hard-link their files from the cache, so a file edited in place in any prefix
    changed the cached copy: linking it again would spread the damage. One ``stat`` per file
    (its recorded size); ``cema verify --full`` compares hashes.
    """
    from cema.verify import verify_cache_entry

    entry = package_cache / f"{rec.name}-{rec.version}-{rec.build}"
    problems = verify_cache_entry(entry)
    if not problems:
        return False
    log.warning(
        "the cached package %s is damaged (%s): extracting it again", entry.name, problems[0]
    )
    # renamed first: a sync linking from it meanwhile sees the whole entry or none of it
    trash = package_cache / f".{entry.name}.damaged.{os.urandom(4).hex()}"
    try:
        entry.rename(trash)
    except OSError:
        trash = entry
    (package_cache / f"{entry.name}.lock").unlink(missing_ok=True)
    shutil.rmtree(trash, ignore_errors=True)
    return True


def _verify_local_archive(rec: CondaRecord) -> None:
    """Check the sha256 of a ``file://`` archive: rattler only checks what it downloads."""
    path = file_url_path(rec.url)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise EngineError(
            f"cannot read {path} for {rec.name} {rec.version} ({exc.strerror}).",
            hint="is the local channel still where the lock says? Run `cema lock` if it moved.",
        ) from None
    if digest.hexdigest() != rec.sha256:
        raise EngineError(
            f"the archive {path} does not have the sha256 the lock records for"
            f" {rec.name} {rec.version}: the file or the lock was changed.",
            hint="run `cema lock` to resolve again from the channel as it is now.",
        )


def _link_config(link: str) -> Any:
    """rattler's settings for ``link``: its defaults (hard links), or copies (reflinks allowed:
    a clone is a file of its own). Symbolic links stay allowed: rattler makes only those a
    package ships, never one into the cache (refused, it copies a folder link as a file, and fails).
    """
    if link == "hardlink":
        return None
    config = rattler.Config()
    config.set("allow-hard-links", "false")
    return config


def match_spec_problem(spec: str) -> str | None:
    """Why ``spec`` is not a match spec the solver reads (rattler's words), or None."""
    try:
        rattler.MatchSpec(spec)
    except _SPEC_ERRORS as exc:
        return str(exc).strip().splitlines()[0].rstrip(".")
    return None


def prefix_satisfies(prefix: Path, specs: Sequence[str]) -> bool:
    """True when every conda match spec is met by a package installed in ``prefix``."""
    records = []
    for meta in (prefix / "conda-meta").glob("*.json"):
        try:
            records.append(rattler.PrefixRecord.from_path(meta))
        except Exception:
            log.debug("ignoring unreadable %s", meta)
    for spec in specs:
        try:
            match = rattler.MatchSpec(spec)
        except _SPEC_ERRORS:
            return False
        if not any(match.matches(r) for r in records):
            return False
    return True


class RattlerEngine:
    """The embedded engine: ``Solver`` by ``rattler.solve``, ``Builder`` by ``rattler.install``."""

    name = "rattler"

    def __init__(self, *, host_platform: str | None = None) -> None:
        self.host_platform = host_platform or str(rattler.Subdir.current())
        # one gateway per engine: repodata is fetched and parsed once for all the solves of a lock
        self._gateway: Any = None
        self._virtual: dict[str, list[Any]] = {}
        # one event loop for every solve: a loop per call costs more than a small solve
        self._loop: asyncio.AbstractEventLoop | None = None

    def close(self) -> None:
        """Release the event loop (engines are cheap; this only matters in long processes)."""
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def __del__(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is not None and not loop.is_closed():
            loop.close()

    def solve(
        self,
        *,
        specs: Sequence[str],
        channels: Sequence[str],
        platform: str,
        locked: Sequence[CondaRecord] = (),
    ) -> list[CondaRecord]:
        """Resolve ``specs`` for ``platform`` (plus ``noarch``) from ``channels``."""
        try:
            match_specs = [rattler.MatchSpec(s) for s in specs]
        except _SPEC_ERRORS as exc:
            raise SolveError(f"{exc}.", hint="check the conda specs in cema.yaml.") from None
        if self._gateway is None:
            self._gateway = rattler.Gateway()
            self._loop = asyncio.new_event_loop()
        if platform not in self._virtual:
            self._virtual[platform] = virtual_packages(platform, self.host_platform)
        try:
            solved = _run(
                rattler.solve(
                    sources=[rattler.Channel(c) for c in channels],
                    gateway=self._gateway,
                    specs=match_specs,
                    platforms=[rattler.Subdir(platform), rattler.Subdir("noarch")],
                    locked_packages=[_from_record(r) for r in locked],
                    virtual_packages=self._virtual[platform],
                ),
                self._loop,
            )
        except _CHANNEL_ERRORS as exc:
            raise SolveError(
                f"cannot read the channels {', '.join(channels)} for {platform}:"
                f" {str(exc).strip()}",
                hint="check the channel names or paths, and the network (offline: use a local"
                " channel, or `cema sync --frozen` with a warm package cache).",
            ) from None
        except rattler_errors.SolverError as exc:
            missing = self._missing_package(match_specs, channels, platform)
            if missing is not None:
                raise missing from None
            raise SolveError(
                f"the specs {', '.join(specs)} cannot be resolved for {platform}:\n"
                f"{str(exc).strip()}",
                hint="loosen or fix the version constraints in cema.yaml.",
            ) from None
        return sorted((_to_record(r) for r in solved), key=lambda r: r.name)

    def _missing_package(
        self, specs: Sequence[Any], channels: Sequence[str], platform: str
    ) -> SolveError | None:
        """After a failed solve: the error for a spec no channel has any package of, if any.

        The channels' names were read for the solve already (the gateway keeps them), so this
        costs one pass over the names, on the error path only.
        """
        wanted = [(m, m.name.normalized) for m in specs if m.name is not None]
        try:
            names = _run(
                self._gateway.names(
                    [rattler.Channel(c) for c in channels],
                    [rattler.Subdir(platform), rattler.Subdir("noarch")],
                ),
                self._loop,
            )
        except (*_CHANNEL_ERRORS, rattler_errors.SolverError):
            return None
        known = {n.normalized for n in names}
        for spec, name in wanted:
            if name in known or name.startswith("__"):  # a virtual package is in no channel
                continue
            import difflib

            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.75)
            where = ", ".join(channels)
            if close:
                hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
            else:
                hint = (
                    f"check the name; if another channel has it, add that channel to"
                    f" `channels:` (these have {len(known)} packages for {platform})."
                )
            asked = f", asked as {str(spec)!r}" if str(spec) != name else ""
            return SolveError(
                f"no package named {name!r} in {where} ({platform}{asked}).", hint=hint
            )
        return None

    def find(
        self,
        *,
        spec: str,
        channels: Sequence[str],
        platform: str,
        locked: Sequence[CondaRecord] = (),
    ) -> CondaRecord | None:
        """The record for ``spec`` alone (dependencies aside): a locked one that still matches,
        else the highest in the first channel that has one (strict channel priority)."""
        try:
            match = rattler.MatchSpec(spec)
        except _SPEC_ERRORS as exc:
            raise SolveError(f"{exc}.", hint="check the conda specs in cema.yaml.") from None
        for rec in locked:
            if match.matches(_from_record(rec)):
                return rec
        if self._gateway is None:
            self._gateway = rattler.Gateway()
            self._loop = asyncio.new_event_loop()
        for channel in channels:
            try:
                found = _run(
                    self._gateway.query(
                        [rattler.Channel(channel)],
                        [rattler.Subdir(platform), rattler.Subdir("noarch")],
                        [match],
                        recursive=False,
                    ),
                    self._loop,
                )
            except _CHANNEL_ERRORS as exc:
                raise SolveError(
                    f"cannot read the channel {channel} for {platform}: {exc}",
                    hint="check the channel names or paths, and the network.",
                ) from None
            candidates = [r for records in found for r in records if match.matches(r)]
            if candidates:
                return _to_record(max(candidates, key=lambda r: (r.version, r.build_number)))
        return None

    def build(self, *, step: BuildStep, reporter: Reporter) -> None:
        """Install into ``staging`` with ``final`` patched into every file (rename to publish)."""
        records = step.records
        for rec in records:
            cached = _in_package_cache(step.package_cache, rec)
            if cached and _cache_entry_damaged(step.package_cache, rec):
                cached = False  # removed: rattler extracts it again
            # rattler checks the hashes of what it downloads, not of local files it reads
            if rec.url.startswith("file://") and not cached:
                _verify_local_archive(rec)
        repodata_records = [_from_record(r) for r in records]
        try:
            _run(
                rattler.install(
                    repodata_records,
                    target_prefix=step.staging,
                    alternative_target_prefix=step.final,
                    cache_dir=step.package_cache,
                    platform=rattler.Subdir(step.platform),
                    reporter=install_reporter(reporter, label=f"{step.env}: linking"),
                    show_progress=False,
                    execute_link_scripts=False,
                    config=_link_config(step.link),
                )
            )
        except (
            rattler_errors.InstallerError,
            rattler_errors.TransactionError,
            rattler_errors.LinkError,
            rattler_errors.ExtractError,
            rattler_errors.IoError,
            rattler_errors.FetchRepoDataError,
            rattler_errors.CacheDirError,
        ) as exc:
            if DiskFullError.seen_in(str(exc)):
                # the package cache, the staging folder and the prefix: all in the store
                store = os.path.commonpath([step.package_cache, step.staging, step.final])
                raise DiskFullError(store, installing=f"environment {step.env!r}") from None
            raise EngineError(
                f"installing into {step.final} failed: {str(exc).strip()}",
                hint="run `cema sync` again; if it fails the same way, the locked records cannot"
                " be installed as they are (a changed channel: `cema lock --upgrade`; a"
                " `dependencies: false` entry may lack what it needs).",
            ) from None
        finally:
            reporter.finish()
