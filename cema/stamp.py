"""The no-op stamp: a sync's "all up to date", kept per project, checked by a stat per file."""

from __future__ import annotations

# A plain ``cema sync`` that finds nothing to do is what CI and ``cema run`` pay for most often.
# Deciding it the long way reads the spec and the lock into model objects and plans; the answer
# only depends on the spec's and the lock's bytes, Cema's version, the platform, the store and
# the receipts of the prefixes. After a sync leaves every env of a project ready, ``record`` keeps
# that answer in a small JSON file under the user's cache dir (``$CEMA_HOME/cache/noop/``); the
# next ``cema sync`` (``check``) reads the two texts, hashes them, and stats each receipt and the
# project's registration. Anything different (a byte of the spec or the lock, a receipt written
# or replaced, which changes its ctime, a prefix gone, another store, a new Cema) and the long
# way runs, and decides as it always did. A venv's address also depends on the interpreter
# chosen for it (the running one, else the newest of pyenv's, else uv's): a project with venvs
# keeps those candidates too, and the folder of each venv's base interpreter as a witness.
# Like pixi's environment file: a cache of a verdict, never a second way to decide it. Written
# only when it changes, so a no-op writes nothing.
import contextlib
import json
import os
import sys
from pathlib import Path

import xxhash

from cema._fs import LOCK_LIMIT, SPEC_LIMIT, MiB, atomic_write, read_capped, stat_signature
from cema._paths import current_platform, default_home, find_spec_file, pyenv_versions_dir
from cema._version import __version__

_STAMP_LIMIT = 16 * MiB
_FORMAT = 2

#: the shapes of ``cema ...`` that may be answered from the stamp: only these flags, and `sync`
_SWITCHES = frozenset({"-q", "--quiet", "--locked", "--frozen"})
_VALUED = frozenset({"--project", "--store"})


def noop_message(count: int) -> str:
    """What ``cema sync`` prints when every env is ready (the long way and the stamp alike)."""
    return f"{count} environment(s) up to date."


def _store_key(store: str | None) -> str:
    """``--store``/``$CEMA_STORE`` as given, made absolute (it is relative to the cwd)."""
    return "" if store is None else str(Path(store).expanduser().resolve())


def _stamp_path(spec_file: Path, store: str | None) -> Path:
    where = f"{spec_file}\0{_store_key(store)}\0{current_platform()}"
    name = xxhash.xxh3_64_hexdigest(where.encode("utf-8", "surrogateescape"))
    return default_home() / "cache" / "noop" / f"{name}.json"


def _key(spec_file: Path, spec: bytes, lock_file: Path, lock: bytes, store: str | None) -> str:
    digest = xxhash.xxh3_128()
    # the home folder: `store: ~/x` in cema.yaml depends on it
    home = str(Path.home())
    for part in (__version__, current_platform(), str(spec_file), _store_key(store), home):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(len(spec).to_bytes(8, "little") + spec)
    digest.update(str(lock_file).encode("utf-8", "surrogateescape") + b"\0" + lock)
    return digest.hexdigest()


def _pythons() -> list[str]:
    """What choosing a venv's interpreter looks at first: the running one, pyenv's versions."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    try:
        pyenv = sorted(entry.name for entry in pyenv_versions_dir().iterdir())
    except OSError:
        pyenv = []
    return [base, ".".join(map(str, sys.version_info[:3])), *pyenv]


def _chosen_first(home: str) -> bool:
    """Whether a venv's base interpreter folder is the running one's or one of pyenv's (the
    candidates ``_pythons`` lists), not one that uv found after them."""
    base = Path(getattr(sys, "_base_executable", None) or sys.executable)
    return Path(home) == base.parent or Path(home).parent.parent == pyenv_versions_dir()


def _venv_home(prefix: Path) -> str | None:
    """The folder of a venv's base interpreter (``home`` in ``pyvenv.cfg``), None for conda."""
    try:
        text = read_capped(prefix / "pyvenv.cfg", MiB).decode("utf-8", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return value.strip()
    return None


def record(
    spec_file: Path,
    lock_file: Path,
    *,
    store: str | None,
    witnesses: dict[str, list[int]],
    signatures: tuple[list[int], list[int]],
    prefixes: list[Path],
    count: int,
) -> None:
    """Keep "``count`` envs up to date" for this spec, lock and ``--store``, if it changed.

    ``witnesses``: every file whose change must send the next sync the long way (receipts,
    the registration) with the stat its soundness was checked at; ``prefixes``: the envs'
    prefixes (a venv among them adds its interpreters); ``signatures``: of the spec before it
    was read and of the lock as the sync used it (fresh): a file edited since gets no stamp.
    Best effort: a cache.
    """
    try:
        spec = read_capped(spec_file, SPEC_LIMIT)
        lock = read_capped(lock_file, LOCK_LIMIT)
        if [stat_signature(spec_file), stat_signature(lock_file)] != list(signatures):
            return
        homes = {home for home in map(_venv_home, prefixes) if home is not None}
        if not all(_chosen_first(home) for home in homes):
            return  # an interpreter uv found: what uv would find next is not known here
        files = {**witnesses, **{home: stat_signature(Path(home)) for home in homes}}
    except OSError:
        return
    data = {
        "format": _FORMAT,
        "key": _key(spec_file, spec, lock_file, lock, store),
        "lock": str(lock_file),
        "count": count,
        "pythons": _pythons() if homes else None,
        "files": dict(sorted(files.items())),
    }
    path = _stamp_path(spec_file, store)
    text = json.dumps(data, indent=1)
    with contextlib.suppress(OSError, ValueError):
        if read_capped(path, _STAMP_LIMIT).decode("utf-8") == text:
            return  # the same verdict: a no-op writes nothing
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text, durable=False)


def _parse(argv: list[str]) -> tuple[bool, str | None, str | None] | None:
    """(quiet, --project, --store) when ``argv`` is a plain ``sync``; else None."""
    quiet = False
    project = os.environ.get("CEMA_PROJECT") or None
    store = os.environ.get("CEMA_STORE") or None
    modes = 0
    verbs = 0
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        if arg == "sync":
            verbs += 1
        elif arg in _SWITCHES:
            quiet = quiet or arg in ("-q", "--quiet")
            modes += arg in ("--locked", "--frozen")
        elif name in _VALUED:
            if not eq:
                value = next(args, "")
            if not value or value.startswith("-"):
                return None
            if name == "--project":
                project = value
            else:
                store = value
        else:
            return None
    if verbs != 1 or modes > 1:
        return None
    return quiet, project, store


def check(argv: list[str]) -> bool:
    """Answer ``cema sync`` from the stamp: True when it printed that everything is ready.

    False (nothing printed) whenever the stamp is missing or anything differs: the caller then
    runs the command the long way. The caller has checked the environment's settings (an
    invalid ``$CEMA_LOCKED`` is an error either way).
    """
    parsed = _parse(argv)
    if parsed is None:
        return False
    quiet, project, store = parsed
    try:
        spec_file = find_spec_file(Path(project) if project else None)
        data = json.loads(read_capped(_stamp_path(spec_file, store), _STAMP_LIMIT))
        if data.get("format") != _FORMAT:
            return False
        lock_file = Path(data["lock"])
        spec = read_capped(spec_file, SPEC_LIMIT)
        lock = read_capped(lock_file, LOCK_LIMIT)
        if data["key"] != _key(spec_file, spec, lock_file, lock, store):
            return False
        if data["pythons"] is not None and data["pythons"] != _pythons():
            return False
        for name, seen in data["files"].items():
            if stat_signature(Path(name)) != seen:
                return False
        count = int(data["count"])
    except Exception:
        return False
    if not quiet:
        sys.stdout.write(noop_message(count) + "\n")
    return True


__all__ = ["check", "noop_message", "record"]
