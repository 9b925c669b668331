"""Reading and writing ``cema.lock``: deterministic YAML, schema and content-hash checks."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import xxhash

from cema._fs import LOCK_LIMIT, atomic_write, read_capped, read_text_capped
from cema.errors import LockError, UnreadableFileError
from cema.model import _yaml
from cema.model.lock import (
    LOCK_FILENAME,
    LOCK_VERSION,
    RECORDS_HASH,
    CondaRecord,
    LockedEnv,
    LockedPlatform,
    Lockfile,
    PipRecord,
    check_records_hash,
    with_records_hash,
)
from cema.model.urls import from_portable, redact_url, to_portable
from cema.model.validate import key_path, node_at, short

_HAND_EDITED = "it was probably edited by hand or by another tool: run `cema lock` to rewrite it."

_HEADER = (
    "# Written by `cema lock`: the exact packages of every environment.\n"
    "# Commit it; do not edit it by hand (`cema lock` rewrites it, `cema sync` installs it).\n"
)


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
        if env.variables:
            body["variables"] = dict(env.variables)
        platforms: dict[str, Any] = {}
        for plat in sorted(env.platforms):
            content = env.platforms[plat]
            conda = []
            for rec in sorted(content.conda, key=lambda r: (r.name, r.subdir)):
                data = rec.as_dict()
                data["channel"] = to_portable(rec.channel, base)
                data["url"] = to_portable(rec.url, base)
                conda.append(data)
            platforms[plat] = {
                "content-hash": content.content_hash,
                **({"omitted": sorted(content.omitted)} if content.omitted else {}),
                **({"commands": list(content.commands)} if content.commands else {}),
                **({"commands-env": dict(content.commands_env)} if content.commands_env else {}),
                "conda": conda,
                "pip": [
                    {**r.as_dict(), "url": redact_url(r.url)}
                    for r in sorted(content.pip, key=lambda r: r.name)
                ],
            }
            platforms[plat] = with_records_hash(name, body, plat, platforms[plat])
        body["platforms"] = platforms
        envs[name] = body
    return {"version": LOCK_VERSION, "environments": envs}


def to_yaml(lock: Lockfile) -> str:
    """The lock as deterministic, sorted, diff-friendly YAML."""
    return _HEADER + _yaml.dump(to_doc(lock))


def write_lock(lock: Lockfile, path: Path | None = None, *, cache_dir: Path | None = None) -> Path:
    """Write the lock atomically and durably: never half written."""
    target = Path(path or lock.path or LOCK_FILENAME).resolve()
    doc = to_doc(replace(lock, path=target))
    text = _HEADER + _yaml.dump(doc)
    atomic_write(target, text)
    _remember(_cache_file(cache_dir, text, target.parent), doc)
    return target


def _remember(cache: Path | None, doc: Any) -> None:
    """Keep a quick copy of a checked lock document (best effort).

    The copy is one line of JSON, the heads of every env's content, then the records: each
    platform's records are a slice of the rest of the file that the head points at, parsed
    when first asked for. A no-op sync of 500 envs reads the heads, not 5,000 records.
    """
    if cache is None:
        return
    blobs: list[bytes] = []
    offset = 0

    def stash(records: Any) -> list[int]:
        nonlocal offset
        blob = json.dumps(records or []).encode("utf-8")
        blobs.append(blob)
        offset += len(blob)
        return [offset - len(blob), len(blob)]

    envs = {}
    for name, body in doc["environments"].items():
        platforms = {
            plat: {
                **content,
                "conda": stash(content.get("conda")),
                "pip": stash(content.get("pip")),
            }
            for plat, content in body["platforms"].items()
        }
        envs[name] = {**body, "platforms": platforms}
    head = json.dumps({**doc, "environments": envs}).encode("utf-8")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache, b"".join([head, b"\n", *blobs]), durable=False)
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
        channel=from_portable(str(data["channel"]), base),
        url=from_portable(str(data["url"]), base),
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


def _records(
    content: Mapping[str, Any], base: Path
) -> tuple[tuple[CondaRecord, ...], tuple[PipRecord, ...]]:
    return (
        tuple(_conda_from(r, base) for r in content.get("conda") or ()),
        tuple(_pip_from(r) for r in content.get("pip") or ()),
    )


def _cached_records(
    content: Mapping[str, Any], blobs: memoryview, base: Path, path: Path
) -> tuple[tuple[CondaRecord, ...], tuple[PipRecord, ...]]:
    try:
        unpacked = {
            key: json.loads(bytes(blobs[start : start + size]))
            for key in ("conda", "pip")
            for start, size in [content[key]]
        }
        return _records(unpacked, base)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise LockError(
            f"the cached copy of {path} is damaged.",
            hint="delete the store's cache/locks folder; it is rebuilt from cema.lock.",
        ) from None


@functools.cache
def _validator() -> Any:
    from importlib import resources

    import jsonschema

    schema = json.loads(
        resources.files("cema").joinpath("schemas/cema-lock.schema.json").read_text("utf-8")
    )
    return jsonschema.Draft202012Validator(schema)


def _schema_error(doc: Any, path: Path, root: Any = None) -> LockError | None:
    """Why ``doc`` breaks the lock schema, with the line and key path, or None if it does not.

    Only the YAML path pays for this: a quick copy is written after the check passed.
    """
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator().iter_errors(doc))
    if error is None:
        return None
    parts = list(error.absolute_path)
    node = node_at(root, parts)
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    if error.validator == "type":
        got = type(error.instance).__name__
        message = f"expected {error.validator_value}, got {got} {short(error.instance)}"
    else:
        message = short(error.message, 200)
    where = f" at {key_path(parts)}" if parts else ""
    return LockError(f"{path}{line}: not a valid Cema lock{where}: {message}.", hint=_HAND_EDITED)


def _cache_file(cache_dir: Path | None, text: str, base: Path) -> Path | None:
    if cache_dir is None:
        return None
    key = xxhash.xxh3_128_hexdigest(f"{LOCK_VERSION}\0{base}\0{text}".encode())
    return cache_dir / f"{key}.jsonl"


def read_lock(path: Path | str, *, cache_dir: Path | None = None, older: bool = False) -> Lockfile:
    """Read ``cema.lock``, checking its structure and that no record was edited by hand.

    With ``cache_dir``, a lock read before is taken from a quick copy keyed by its exact text
    (already checked then): a no-op ``cema sync`` does not pay for YAML parsing. ``older``
    accepts a lock an older Cema wrote, without records-hashes (content hashes still
    checked): ``cema lock`` then keeps its pins while writing it again; it is never cached.
    """
    given = Path(path).absolute()  # errors name the file the user knows, not a link's target
    path = given.resolve()
    try:
        text = read_text_capped(given, LOCK_LIMIT)
    except FileNotFoundError:
        raise LockError(
            f"there is no lock at {given}.", hint="run `cema lock` to resolve the environments."
        ) from None
    except UnreadableFileError as exc:
        raise LockError(f"the lock file {exc}.", hint=_HAND_EDITED) from None
    except OSError as exc:
        raise LockError(
            f"cannot read {given} ({exc.strerror or exc}).", hint="check the file's permissions."
        ) from None
    cache = _cache_file(cache_dir, text, path.parent)
    if cache is not None:
        try:
            raw = read_capped(cache, 4 * LOCK_LIMIT)
            end = raw.index(b"\n")
            blobs = memoryview(raw)[end + 1 :]
            return _build(json.loads(raw[:end]), path, blobs=blobs)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no (usable) copy: read the YAML
    import yaml  # not on a no-op sync's path: a lock read before comes from its JSON copy

    try:
        root, doc = _yaml.load(text)
    except _yaml.Refused as exc:
        line = f":{exc.line}" if exc.line is not None else ""
        where = f" at {exc.key}" if exc.key else ""
        raise LockError(
            f"{path}{line}: this YAML is refused{where}: {exc.reason}.", hint=_HAND_EDITED
        ) from None
    except yaml.YAMLError as exc:
        raise LockError(
            f"{path} is not valid YAML ({exc}).", hint="run `cema lock` to rewrite it."
        ) from None
    if not isinstance(doc, dict) or doc.get("version") != LOCK_VERSION:
        found = doc.get("version") if isinstance(doc, dict) else None
        raise LockError(
            f"{path} has lock format version {short(found)}; this Cema reads {LOCK_VERSION}.",
            hint="run `cema lock` to rewrite it with this version of Cema.",
        )
    broken = _schema_error(doc, path, root)
    if broken is not None:
        raise broken
    lock = _build(doc, path, older=older)
    stamped = all(
        RECORDS_HASH in content
        for body in doc["environments"].values()
        for content in body["platforms"].values()
    )
    if stamped:
        _remember(cache, doc)
    return lock


def _pairs(mapping: Any) -> tuple[tuple[str, str], ...]:
    """A lock's mapping of variables (absent in older locks) as sorted pairs."""
    return tuple(sorted((str(k), str(v)) for k, v in (mapping or {}).items()))


def _build(
    doc: Any, path: Path, *, blobs: memoryview | None = None, older: bool = False
) -> Lockfile:
    """Lock objects from a parsed lock document, checking every content-hash.

    With ``blobs``, the document is a quick copy (see ``_remember``), checked when it was
    made: its records are the slices of ``blobs`` its heads point at, parsed when asked for.
    """
    base = path.parent
    envs: dict[str, LockedEnv] = {}
    try:
        for name, body in doc["environments"].items():
            platforms = {}
            for plat, content in body["platforms"].items():
                kind = str(body["kind"])
                omitted = tuple(str(o) for o in content.get("omitted") or ())
                commands = tuple(str(c) for c in content.get("commands") or ())
                commands_env = _pairs(content.get("commands-env"))
                if blobs is not None:
                    platforms[str(plat)] = LockedPlatform.deferred(
                        platform=str(plat),
                        kind=kind,
                        content_hash=str(content["content-hash"]),
                        load=functools.partial(_cached_records, content, blobs, base, path),
                        omitted=omitted,
                        commands=commands,
                        commands_env=commands_env,
                    )
                    continue
                conda, pip = _records(content, base)
                locked = LockedPlatform(
                    platform=str(plat),
                    kind=kind,
                    conda=conda,
                    pip=pip,
                    omitted=omitted,
                    commands=commands,
                    commands_env=commands_env,
                )
                if locked.content_hash != content.get("content-hash"):
                    raise LockError(
                        f"{path}: the records of environment {name!r} on {plat} do not match"
                        " their content-hash: the lock was edited by hand.",
                        hint="run `cema lock` to resolve it again (or restore the file from git).",
                    )
                if not (older and RECORDS_HASH not in content):
                    check_records_hash(path, str(name), body, str(plat), content)
                platforms[str(plat)] = locked
            envs[str(name)] = LockedEnv(
                name=str(name),
                spec_hash=str(body["spec-hash"]),
                kind=str(body["kind"]),
                python=body.get("python"),
                variables=_pairs(body.get("variables")),
                platforms=platforms,
            )
    except LockError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _schema_error(doc, path) or LockError(
            f"{path} is not a valid Cema lock.", hint=_HAND_EDITED
        ) from None
    return Lockfile(path=path, envs=envs)
