"""The ``cema.lock`` model: deterministic read and write, integrity and freshness checks."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import xxhash
import yaml

from cema import _yaml
from cema.errors import LockError, StaleLockError
from cema.hashing import content_hash, spec_hash
from cema.spec import ProjectSpec

LOCK_FILENAME = "cema.lock"
LOCK_VERSION = 1
_HEADER = (
    "# Written by `cema lock`: the exact packages of every environment.\n"
    "# Commit it; do not edit it by hand (`cema lock` rewrites it, `cema sync` installs it).\n"
)

# libyaml parses big locks much faster; fall back to pure Python without it
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, kw_only=True, slots=True)
class CondaRecord:
    """One conda package, with all a prefix needs to install it without solving."""

    name: str
    version: str
    build: str
    build_number: int
    subdir: str
    channel: str
    url: str
    sha256: str
    md5: str | None = None
    size: int | None = None
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    noarch: str | None = None
    timestamp: int | None = None
    #: installed without its dependencies (a ``dependencies: false`` entry)
    no_deps: bool = False

    @property
    def file_name(self) -> str:
        """The archive's file name, from its URL."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    def as_dict(self) -> dict[str, Any]:
        """The record as written to the lock (optional fields only when set)."""
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "subdir": self.subdir,
        }
        if self.noarch:
            out["noarch"] = self.noarch
        out["depends"] = list(self.depends)
        out["constrains"] = list(self.constrains)
        out["channel"] = self.channel
        out["url"] = self.url
        out["sha256"] = self.sha256
        if self.md5:
            out["md5"] = self.md5
        if self.size is not None:
            out["size"] = self.size
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        if self.no_deps:
            out["no_deps"] = True
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class PipRecord:
    """One Python distribution installed by uv after the conda layer."""

    name: str
    version: str
    url: str
    sha256: str
    #: installed without its dependencies (a ``dependencies: false`` entry)
    no_deps: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The record as written to the lock."""
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "url": self.url,
            "sha256": self.sha256,
        }
        if self.no_deps:
            out["no_deps"] = True
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class LockedPlatform:
    """The exact content of one env on one platform."""

    platform: str
    kind: str
    conda: tuple[CondaRecord, ...] = ()
    pip: tuple[PipRecord, ...] = ()
    #: ``optional`` entries that could not be resolved for this platform (not retried)
    omitted: tuple[str, ...] = ()
    #: ``install_commands`` that run on this platform, in order (part of the content)
    commands: tuple[str, ...] = ()

    @property
    def content_hash(self) -> str:
        """The hash of the locked content (the prefix address, interpreter aside for venvs)."""
        return content_hash(
            kind=self.kind,
            platform=self.platform,
            conda=(r.as_dict() for r in self.conda),
            pip=(r.as_dict() for r in self.pip),
            commands=self.commands,
        )

    def python_version(self) -> str | None:
        """The version of the locked ``python`` conda package, if any."""
        return next((r.version for r in self.conda if r.name == "python"), None)


@dataclass(frozen=True, kw_only=True, slots=True)
class LockedEnv:
    """One env of the lock: the spec hash it was resolved from and its content per platform."""

    name: str
    spec_hash: str
    kind: str
    python: str | None = None
    platforms: Mapping[str, LockedPlatform] = field(default_factory=dict)

    def for_platform(self, platform: str) -> LockedPlatform:
        """The content for ``platform``, or a ``LockError`` saying it was not locked for it."""
        try:
            return self.platforms[platform]
        except KeyError:
            locked = ", ".join(sorted(self.platforms)) or "none"
            raise LockError(
                f"environment {self.name!r} is not locked for {platform} (locked: {locked}).",
                hint=f"add {platform} to its `platforms` in cema.yaml and run `cema lock`.",
            ) from None


@dataclass(frozen=True, kw_only=True, slots=True)
class Lockfile:
    """A whole ``cema.lock``."""

    path: Path | None = None
    envs: Mapping[str, LockedEnv] = field(default_factory=dict)

    def env(self, name: str) -> LockedEnv:
        """The locked env called ``name``, or a ``LockError`` with a hint to lock it."""
        try:
            return self.envs[name]
        except KeyError:
            raise LockError(
                f"environment {name!r} is not in {self.path or 'the lock'}.",
                hint="run `cema lock` to resolve it.",
            ) from None

    def with_envs(self, envs: Iterable[LockedEnv]) -> Lockfile:
        """A copy holding exactly ``envs``."""
        return replace(self, envs={e.name: e for e in sorted(envs, key=lambda e: e.name)})


# --- local channels are written relative to the lock's folder -----------------------------

_USERINFO = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@]+@", re.IGNORECASE)
# anaconda.org-style tokens: `https://host/t/<token>/channel/...`, the token long and opaque
_TOKEN = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^/]+)/t/[A-Za-z0-9_-]{16,}/", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` without ``user:password@`` and without a ``/t/<token>/`` part after the host."""
    return _TOKEN.sub(r"\g<head>/", _USERINFO.sub(r"\g<scheme>", url))


def _to_portable(url: str, base: Path | None) -> str:
    if not url.startswith("file://"):
        # credentials never land in the lock: the engines take them from the environment
        return redact_url(url)
    if base is None:
        return url
    folder, _, name = url.rpartition("/")
    return _portable_folder(folder, str(base)) + name


@functools.lru_cache(maxsize=1024)
def file_url_path(url: str) -> Path:
    """The local path of a ``file://`` URL (``file:///C:/x`` is ``C:/x`` on Windows)."""
    path = unquote(urlparse(url).path)
    if sys.platform == "win32" and re.match(r"^/[A-Za-z]:", path):
        path = path[1:]
    return Path(path)


def _portable_folder(folder_url: str, base: str) -> str:
    try:
        rel = os.path.relpath(file_url_path(folder_url), base).replace(os.sep, "/")
    except ValueError:  # another drive (Windows): no relative path, keep the URL
        return folder_url.rstrip("/") + "/"
    return (rel if rel.startswith("../") or rel == ".." else "./" + rel).rstrip("/") + "/"


def _from_portable(url: str, base: Path | None) -> str:
    if base is None or not url.startswith(("./", "../")):
        return url
    folder, _, name = url.rpartition("/")
    return _absolute_folder(folder, str(base)) + name


@functools.lru_cache(maxsize=1024)
def _absolute_folder(folder: str, base: str) -> str:
    # the lock's own path is already resolved: normalising is enough (no symlink lookups)
    return Path(os.path.normpath(Path(base) / folder)).as_uri().rstrip("/") + "/"


# --- writing --------------------------------------------------------------------------------


def to_doc(lock: Lockfile) -> dict[str, Any]:
    """The lock as plain data, sorted, with local channels relative to the lock's folder."""
    base = lock.path.parent if lock.path else None
    envs: dict[str, Any] = {}
    for name in sorted(lock.envs):
        env = lock.envs[name]
        body: dict[str, Any] = {"spec-hash": env.spec_hash, "kind": env.kind}
        if env.python is not None:
            body["python"] = env.python
        platforms: dict[str, Any] = {}
        for plat in sorted(env.platforms):
            content = env.platforms[plat]
            conda = []
            for rec in sorted(content.conda, key=lambda r: (r.name, r.subdir)):
                data = rec.as_dict()
                data["channel"] = _to_portable(rec.channel, base)
                data["url"] = _to_portable(rec.url, base)
                conda.append(data)
            platforms[plat] = {
                "content-hash": content.content_hash,
                **({"omitted": sorted(content.omitted)} if content.omitted else {}),
                **({"commands": list(content.commands)} if content.commands else {}),
                "conda": conda,
                "pip": [
                    {**r.as_dict(), "url": redact_url(r.url)}
                    for r in sorted(content.pip, key=lambda r: r.name)
                ],
            }
        body["platforms"] = platforms
        envs[name] = body
    return {"version": LOCK_VERSION, "environments": envs}


def to_yaml(lock: Lockfile) -> str:
    """The lock as deterministic, sorted, diff-friendly YAML."""
    return _HEADER + _yaml.dump(to_doc(lock))


def write_lock(lock: Lockfile, path: Path | None = None, *, cache_dir: Path | None = None) -> Path:
    """Write the lock atomically (a temp file, then rename): never half written."""
    target = Path(path or lock.path or LOCK_FILENAME).resolve()
    doc = to_doc(replace(lock, path=target))
    text = _HEADER + _yaml.dump(doc)
    # unique across hosts too: a lock may sit on a shared filesystem
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _remember(_cache_file(cache_dir, text, target.parent), doc)
    return target


def _remember(cache: Path | None, doc: Any) -> None:
    """Keep a JSON copy of a checked lock document (best effort)."""
    if cache is None:
        return
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, cache)
    except OSError:  # a read-only cache only costs speed
        pass


# --- reading --------------------------------------------------------------------------------


def _conda_from(data: Mapping[str, Any], base: Path | None) -> CondaRecord:
    return CondaRecord(
        name=str(data["name"]),
        version=str(data["version"]),
        build=str(data["build"]),
        build_number=int(data["build_number"]),
        subdir=str(data["subdir"]),
        noarch=data.get("noarch"),
        depends=tuple(data.get("depends", ())),
        constrains=tuple(data.get("constrains", ())),
        channel=_from_portable(str(data["channel"]), base),
        url=_from_portable(str(data["url"]), base),
        sha256=str(data["sha256"]),
        md5=data.get("md5"),
        size=data.get("size"),
        timestamp=data.get("timestamp"),
        no_deps=bool(data.get("no_deps", False)),
    )


def _pip_from(data: Mapping[str, Any]) -> PipRecord:
    return PipRecord(
        name=str(data["name"]),
        version=str(data["version"]),
        url=str(data["url"]),
        sha256=str(data["sha256"]),
        no_deps=bool(data.get("no_deps", False)),
    )


def _schema_error(doc: Any, path: Path) -> LockError:
    """Describe why ``doc`` breaks the lock schema (only on the slow, broken path)."""
    from importlib import resources

    import jsonschema

    schema = json.loads(
        resources.files("cema").joinpath("schemas/cema-lock.schema.json").read_text("utf-8")
    )
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(doc)
    )
    where = ".".join(str(p) for p in error.absolute_path) if error else ""
    detail = f" at {where}: {error.message}" if error else ""
    return LockError(
        f"{path} is not a valid Cema lock{detail}.",
        hint="it was probably edited by hand or by another tool: run `cema lock` to rewrite it.",
    )


def _cache_file(cache_dir: Path | None, text: str, base: Path) -> Path | None:
    if cache_dir is None:
        return None
    key = xxhash.xxh3_128_hexdigest(f"{LOCK_VERSION}\0{base}\0{text}".encode())
    return cache_dir / f"{key}.json"


def read_lock(path: Path | str, *, cache_dir: Path | None = None) -> Lockfile:
    """Read ``cema.lock``, checking its structure and that no record was edited by hand.

    With ``cache_dir``, a lock read before is taken from a JSON copy keyed by its exact text
    (already checked then): a no-op ``cema sync`` does not pay for YAML parsing.
    """
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LockError(
            f"there is no lock at {path}.", hint="run `cema lock` to resolve the environments."
        ) from None
    cache = _cache_file(cache_dir, text, path.parent)
    if cache is not None:
        try:
            return _build(json.loads(cache.read_text("utf-8")), path, verify=False)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no (usable) copy: read the YAML
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader (C or Python)
    except yaml.YAMLError as exc:
        raise LockError(
            f"{path} is not valid YAML ({exc}).", hint="run `cema lock` to rewrite it."
        ) from None
    if not isinstance(doc, dict) or doc.get("version") != LOCK_VERSION:
        found = doc.get("version") if isinstance(doc, dict) else None
        raise LockError(
            f"{path} has lock format version {found!r}; this Cema reads {LOCK_VERSION}.",
            hint="run `cema lock` to rewrite it with this version of Cema.",
        )
    lock = _build(doc, path, verify=True)
    _remember(cache, doc)
    return lock


def _build(doc: Any, path: Path, *, verify: bool) -> Lockfile:
    """Lock objects from a parsed document; ``verify`` checks every content-hash."""
    base = path.parent
    envs: dict[str, LockedEnv] = {}
    try:
        for name, body in doc["environments"].items():
            platforms = {}
            for plat, content in body["platforms"].items():
                locked = LockedPlatform(
                    platform=str(plat),
                    kind=str(body["kind"]),
                    conda=tuple(_conda_from(r, base) for r in content.get("conda") or ()),
                    pip=tuple(_pip_from(r) for r in content.get("pip") or ()),
                    omitted=tuple(str(o) for o in content.get("omitted") or ()),
                    commands=tuple(str(c) for c in content.get("commands") or ()),
                )
                if verify and locked.content_hash != content.get("content-hash"):
                    raise LockError(
                        f"{path}: the records of environment {name!r} on {plat} do not match"
                        " their content-hash: the lock was edited by hand.",
                        hint="run `cema lock` to resolve it again (or restore the file from git).",
                    )
                platforms[str(plat)] = locked
            envs[str(name)] = LockedEnv(
                name=str(name),
                spec_hash=str(body["spec-hash"]),
                kind=str(body["kind"]),
                python=body.get("python"),
                platforms=platforms,
            )
    except LockError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _schema_error(doc, path) from None
    return Lockfile(path=path, envs=envs)


# --- freshness ------------------------------------------------------------------------------


def stale_envs(project: ProjectSpec, lock: Lockfile, names: Sequence[str] = ()) -> list[str]:
    """Names of envs whose spec changed since the lock (or that the lock lacks)."""
    wanted = names or sorted(project.environments)
    stale = []
    for name in wanted:
        env = project.env(name)
        locked = lock.envs.get(name)
        if locked is None or locked.spec_hash != spec_hash(env):
            stale.append(name)
    return stale


def check_fresh(project: ProjectSpec, lock: Lockfile, names: Sequence[str] = ()) -> None:
    """Raise ``StaleLockError`` when ``cema.yaml`` changed since ``cema.lock`` was written."""
    stale = stale_envs(project, lock, names)
    extra = [] if names else sorted(set(lock.envs) - set(project.environments))
    if stale or extra:
        parts = []
        if stale:
            parts.append(f"changed or new in cema.yaml: {', '.join(stale)}")
        if extra:
            parts.append(f"no longer declared: {', '.join(extra)}")
        raise StaleLockError(
            f"{lock.path or 'the lock'} is out of date ({'; '.join(parts)}).",
            hint="run `cema lock` and commit cema.lock.",
        )
