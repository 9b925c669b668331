"""Canonical forms of specs, locked content and lock records, and their xxhash keys (golden)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import xxhash

from cema.model.spec import CONDA_NAME_END

if TYPE_CHECKING:
    from cema.model.spec import Dependency, EnvSpec

#: Bump when any canonical form below changes: every spec hash and prefix address changes too.
HASH_SCHEME = 2

# not `*`: "numpy 1.26 *" (any build of 1.26) and "numpy 1.26*" (1.26.x) differ
_OPERATOR_SPACES = re.compile(r"\s*([=<>!~,|])\s*")
_WHITESPACE = re.compile(r"\s+")
_NAME_SEPARATORS = re.compile(r"[-_.]+")


def canonical_name(name: str) -> str:
    """A Python distribution's name as PEP 503 compares it (``Foo_Bar`` → ``foo-bar``)."""
    return _NAME_SEPARATORS.sub("-", name).lower()


@functools.lru_cache(maxsize=8192)  # envs share most specs; a pure function of its text
def normalize_conda_spec(spec: str) -> str:
    """``"NumPy >= 1.26"`` → ``"numpy>=1.26"``: lower-case name, no spaces around operators."""
    text = _WHITESPACE.sub(" ", spec.strip())
    match = CONDA_NAME_END.search(text)
    name, rest = (text[: match.start()], text[match.start() :]) if match else (text, "")
    channel, sep, bare = name.rpartition("::")
    name = f"{channel}{sep}{bare.lower()}"
    rest = _OPERATOR_SPACES.sub(r"\1", rest)
    if rest.startswith(" ") and rest.strip()[:1] not in "=<>!~[":
        return f"{name} {rest.strip()}"
    return name + rest.strip()


@functools.lru_cache(maxsize=8192)
def normalize_pip_requirement(requirement: str) -> str:
    """A PEP 508 requirement with its name canonicalised (``Foo_Bar`` → ``foo-bar``)."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(requirement)
    except InvalidRequirement:
        return _WHITESPACE.sub(" ", requirement.strip())
    req.name = canonical_name(req.name)
    return str(req)


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return xxhash.xxh3_128_hexdigest(text.encode("utf-8"))


def _entry(dep: Dependency, normal: str) -> str:
    """A plain entry is its normalized spec; options follow it in a fixed order."""
    if dep.is_plain:
        return normal
    options = [f"platforms={','.join(sorted(dep.platforms))}"] if dep.platforms else []
    options += [] if dep.dependencies else ["no-deps"]
    options += ["optional"] if dep.optional else []
    return f"{normal} [{'; '.join(options)}]"


def canonical_spec(env: EnvSpec) -> dict[str, Any]:
    """What of an env's spec decides its lock and content: all but its name and variables."""
    out: dict[str, Any] = {
        "scheme": HASH_SCHEME,
        "kind": env.resolved_kind,
        "python": _WHITESPACE.sub("", env.python) if env.python else None,
        "conda": sorted({_entry(d, normalize_conda_spec(d.spec)) for d in env.conda}),
        "pip": sorted({_entry(d, normalize_pip_requirement(d.spec)) for d in env.pip}),
        # channel order is priority order: keep it
        "channels": list(env.channels),
        "platforms": sorted(set(env.platforms)),
    }
    if env.install_commands:
        # order matters within a key; keys in their fixed order
        out["install_commands"] = [[k, list(v)] for k, v in env.install_commands]
    if env.pypi_options is not None:  # other indexes may give other files: re-lock
        out["pypi-options"] = env.pypi_options.canonical()
    return out


def spec_hash(env: EnvSpec) -> str:
    """The key the lock stores to tell whether an env's spec changed since it was resolved."""
    return _digest(canonical_spec(env))[:16]


def content_hash(
    *,
    kind: str,
    platform: str,
    conda: Iterable[Mapping[str, Any]],
    pip: Iterable[Mapping[str, Any]],
    interpreter: str | None = None,
    commands: Iterable[str] = (),
    commands_env: Iterable[tuple[str, str]] = (),
) -> str:
    """The address of a prefix: a hash of exactly what is installed in it.

    URLs are left out on purpose: the same package from a mirror is the same content.
    ``commands_env`` is what install commands run with beyond activation (``CEMA_ENV`` and the
    spec's ``variables``): what they may read is content too, so two envs share a prefix only
    when it is the same. Without commands it is ignored: such an address is as before.
    """
    payload = {
        "scheme": HASH_SCHEME,
        "kind": kind,
        "platform": platform,
        "interpreter": interpreter,
        "conda": sorted(
            (r["name"], r["version"], r["build"], r["subdir"], r["sha256"]) for r in conda
        ),
        "pip": sorted((canonical_name(r["name"]), r["version"], r["sha256"]) for r in pip),
    }
    commands = list(commands)
    if commands:  # install commands change what is in the prefix: in order, they are content
        payload["commands"] = commands
        given = sorted(commands_env)
        if given:  # a lock written before they were recorded has none: its address stays
            payload["commands-env"] = given
    return _digest(payload)[:24]


def records_hash(
    *, env: str, header: Mapping[str, Any], platform: str, content: Mapping[str, Any]
) -> str:
    """The integrity hash of one env on one platform of a lock: every field, as written.

    ``header`` is the env's own fields (``spec-hash``, ``kind``, ``python``, ``variables``; its
    ``platforms`` are left out) and ``content`` this platform's (``content-hash``, ``omitted``,
    ``commands``, ``commands-env``, and every conda and pip record with all its fields,
    channels and URLs as the lock writes them; its own ``records-hash`` is left out). It is no
    address: a lock whose records came from a mirror has another records-hash and the same
    content hash, so the same prefix.
    """
    payload = {
        "scheme": HASH_SCHEME,
        "env": env,
        "platform": platform,
        "header": {k: v for k, v in header.items() if k != "platforms"},
        "content": {k: v for k, v in content.items() if k != "records-hash"},
    }
    return _digest(payload)[:24]


def venv_address(content: str, interpreter_identity: str) -> str:
    """The address of a venv prefix: its content hash and the base interpreter it points at.

    A venv links to its base interpreter, so the same packages on another interpreter are other
    content.
    """
    return xxhash.xxh3_128_hexdigest(f"{content}|{interpreter_identity}".encode())[:24]


def prefix_address(address: str, link: str) -> str:
    """The address of a prefix built with ``link``: hard-linked ones keep ``address`` as it is.

    A copied prefix holds the same content in files of its own: another prefix, so that no two
    projects ever share one prefix with different link modes.
    """
    if link == "hardlink":
        return address
    return xxhash.xxh3_128_hexdigest(f"{address}|link={link}".encode())[:24]
