"""The pip layer and pip-only envs through uv: interpreters, venvs, resolving and installing."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from cema import _proc
from cema._paths import pyenv_versions_dir
from cema.errors import (
    CemaError,
    CommandFailedError,
    DiskFullError,
    EngineUnavailableError,
    SolveError,
)
from cema.model.lock import PipRecord
from cema.model.pypi import PypiOptions
from cema.model.spec import version_request
from cema.store import venv_python

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)

DEFAULT_GLIBC = "2.28"
_UV_PLATFORMS = {
    "linux-64": "x86_64-manylinux_{glibc}",
    "linux-aarch64": "aarch64-manylinux_{glibc}",
    "linux-ppc64le": "powerpc64le-unknown-linux-gnu",
    "osx-64": "x86_64-apple-darwin",
    "osx-arm64": "aarch64-apple-darwin",
    "win-64": "x86_64-pc-windows-msvc",
    "win-arm64": "aarch64-pc-windows-msvc",
}


def uv_bin() -> Path:
    """The uv executable: the one installed with Cema, else on PATH."""
    try:
        from uv import find_uv_bin

        return Path(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return Path(found)
    raise EngineUnavailableError(
        "uv was not found.", hint="install it with `pip install uv` (Cema depends on it)."
    )


# --- interpreters ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Interpreter:
    """A Python interpreter on this machine."""

    path: Path
    version: str

    @property
    def identity(self) -> str:
        """What a venv built from it depends on: its version and real location."""
        return f"cpython-{self.version}@{self.path}"


def _pyenv_candidates() -> list[Interpreter]:
    root = pyenv_versions_dir()
    out = []
    if root.is_dir():
        for entry in root.iterdir():
            exe = entry / "bin" / "python3"
            try:
                Version(entry.name)
            except InvalidVersion:
                continue
            if exe.exists():
                out.append(Interpreter(path=exe, version=entry.name))
    return out


def _current_interpreter() -> Interpreter:
    base = getattr(sys, "_base_executable", None) or sys.executable
    version = ".".join(str(p) for p in sys.version_info[:3])
    return Interpreter(path=Path(base), version=version)


def _uv_find(request: str, *, download: bool) -> Interpreter | None:
    """Ask uv (managed interpreters and PATH without shims), downloading one if allowed."""
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p).name != "shims"
    )
    env = {**os.environ, "PATH": path, "UV_PYTHON_DOWNLOADS": "automatic" if download else "never"}
    script = "import sys; print(sys.executable); print('.'.join(map(str, sys.version_info[:3])))"
    for cmd in (["python", "find", "--no-project", request], ["python", "install", request]):
        if cmd[1] == "install" and not download:
            break
        try:
            _proc.run([uv_bin(), *cmd], what=f"uv {cmd[1]} {request}", env=env)
            found = _proc.run(
                [uv_bin(), "run", "--no-project", "--python", request, "python", "-c", script],
                what="probing the interpreter",
                env=env,
            )
        except CemaError as exc:  # not found: try the next way
            log.debug("uv found no interpreter for %s: %s", request, exc)
            continue
        exe, version = found.stdout.split()[:2]
        return Interpreter(path=Path(exe), version=version)
    return None


def find_interpreter(request: str | None, *, download: bool = True) -> Interpreter:
    """An interpreter satisfying ``request``, found by version (not through shims).

    Looks at the running interpreter, pyenv's versions, then what uv can find or download.
    """
    wanted = version_request(request)
    candidates = [_current_interpreter(), *_pyenv_candidates()]
    matching = [c for c in candidates if Version(c.version) in wanted]
    if matching:
        # the running interpreter first, then the newest match
        if matching[0] is candidates[0]:
            return matching[0]
        return max(matching, key=lambda c: Version(c.version))
    found = _uv_find(request or "3", download=download)
    if found is not None and Version(found.version) in wanted:
        return found
    raise EngineUnavailableError(
        f"no Python interpreter satisfying {request!r} was found on this machine.",
        hint="install one (pyenv, the system, or `uv python install`), or change `python`.",
    )


# --- venvs ----------------------------------------------------------------------------------


def _disk_holding(where: Path, env: Mapping[str, str], *, cache: bool) -> str:
    """``where``, and uv's cache when used and on another disk (either may be the full one)."""
    if not cache:
        return str(where)
    try:
        found = _proc.run([uv_bin(), "cache", "dir"], what="finding uv's cache", env=env)
        uv_cache = Path(found.stdout.strip())
        if uv_cache.is_dir() and uv_cache.stat().st_dev != where.stat().st_dev:
            return f"{where} (or the one holding uv's cache, {uv_cache})"
    except (CemaError, OSError):
        pass
    return str(where)


def _installing(
    cmd: Sequence[str | Path],
    *,
    what: str,
    installing: str,
    where: Path,
    env: Mapping[str, str],
    hint: str | None = None,
    cache: bool = True,
) -> None:
    """Run a uv command that writes into ``where`` (and uv's cache); a full disk is said so."""
    try:
        _proc.run(cmd, what=what, env=env, hint=hint)
    except CommandFailedError as exc:
        if DiskFullError.seen_in(exc.output_tail):
            where_text = _disk_holding(where, env, cache=cache)
            raise DiskFullError(where_text, installing=installing) from None
        raise


def create_venv(interpreter: Interpreter, staging: Path) -> None:
    """Create a bare, relocatable venv in ``staging`` (renamed into place by the caller)."""
    _installing(
        [uv_bin(), "venv", "--quiet", "--relocatable", "--python", interpreter.path, staging],
        what=f"creating a virtualenv with {interpreter.path}",
        installing=f"a virtualenv of {interpreter.path}",
        where=staging.parent.parent,  # the store: staging/ is directly under it
        cache=False,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": ""},
    )


# --- pip layer ------------------------------------------------------------------------------


def uv_platform(platform: str) -> str:
    """The ``--python-platform`` for a conda platform."""
    glibc = os.environ.get("CEMA_OVERRIDE_GLIBC") or DEFAULT_GLIBC
    try:
        return _UV_PLATFORMS[platform].format(glibc=glibc.replace(".", "_"))
    except KeyError:
        raise SolveError(f"pip packages cannot be locked for {platform}.") from None


def index_environ(pypi: PypiOptions | None, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` for a uv child: the spec's indexes, else the user's uv or pip variables.

    uv reads its own ``UV_*`` variables but not pip's: ``PIP_INDEX_URL``,
    ``PIP_EXTRA_INDEX_URL``, ``PIP_FIND_LINKS`` and ``PIP_CERT`` are passed on as their uv
    equivalents where no ``UV_*`` one is set. The spec's ``pypi-options`` win, key by key.
    They go by environment, not argument: a command line (and its credentials) is visible to
    every user of the machine, an environment only to its owner.
    """
    env = dict(base)
    if pypi is not None and pypi.index_url:
        env.pop("UV_INDEX_URL", None)
        env["UV_DEFAULT_INDEX"] = pypi.index_url
    elif not (env.get("UV_DEFAULT_INDEX") or env.get("UV_INDEX_URL")) and env.get("PIP_INDEX_URL"):
        env["UV_DEFAULT_INDEX"] = env["PIP_INDEX_URL"]
    if pypi is not None and pypi.extra_index_urls:
        env.pop("UV_INDEX", None)
        env["UV_EXTRA_INDEX_URL"] = " ".join(pypi.extra_index_urls)
    elif not (env.get("UV_EXTRA_INDEX_URL") or env.get("UV_INDEX")) and env.get(
        "PIP_EXTRA_INDEX_URL"
    ):
        env["UV_EXTRA_INDEX_URL"] = env["PIP_EXTRA_INDEX_URL"]
    if pypi is not None and pypi.find_links:
        env["UV_FIND_LINKS"] = ",".join(pypi.find_link_locations())
    elif not env.get("UV_FIND_LINKS") and env.get("PIP_FIND_LINKS"):
        env["UV_FIND_LINKS"] = ",".join(env["PIP_FIND_LINKS"].split())  # pip's: spaces
    if env.get("PIP_CERT") and not env.get("SSL_CERT_FILE"):
        env["SSL_CERT_FILE"] = env["PIP_CERT"]
    return env


def _record_from(package: Mapping[str, Any], *, no_deps: bool = False) -> PipRecord:
    wheels = package.get("wheels") or []
    artifact = wheels[0] if wheels else package.get("sdist")
    if not artifact or "url" not in artifact:
        raise SolveError(f"uv returned no downloadable file for {package.get('name')!r}.")
    return PipRecord(
        name=str(canonicalize_name(str(package["name"]))),
        version=str(package["version"]),
        url=str(artifact["url"]),
        sha256=str(artifact["hashes"]["sha256"]),
        no_deps=no_deps,
    )


def _pep440(version: str) -> bool:
    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


def compile_pip(
    requirements: Sequence[str],
    *,
    python_version: str,
    platform: str,
    provided: Mapping[str, str] | None = None,
    prefer: Mapping[str, str] | None = None,
    no_deps: bool = False,
    pypi: PypiOptions | None = None,
) -> list[PipRecord]:
    """Resolve ``requirements`` for a python and platform; packages in ``provided`` stay as is.

    ``provided`` maps names the conda layer installs to their versions: they constrain the
    resolution and are left out of the result, so the pip layer never replaces them. ``pypi``
    are the spec's indexes (see ``index_environ``).
    """
    if not requirements:
        return []
    provided = {canonicalize_name(n): v for n, v in (provided or {}).items()}
    pins: dict[str, str] = {canonicalize_name(n): v for n, v in (prefer or {}).items()}
    for name, version in provided.items():
        pins.pop(name, None)
        if _pep440(version):  # a conda version PEP 440 cannot read is no pin (still left out)
            pins[name] = version
    with tempfile.TemporaryDirectory(prefix="cema-pip-") as tmp:
        folder = Path(tmp)
        (folder / "requirements.in").write_text("\n".join(requirements) + "\n", encoding="utf-8")
        (folder / "constraints.txt").write_text(
            "".join(f"{n}=={v}\n" for n, v in sorted(pins.items())), encoding="utf-8"
        )
        try:
            _proc.run(
                [
                    uv_bin(),
                    "pip",
                    "compile",
                    "--quiet",
                    # --python-version is enough to resolve: never fetch an interpreter to lock
                    "--no-python-downloads",
                    "--no-header",
                    "--no-progress",
                    "--generate-hashes",
                    *(["--no-deps"] if no_deps else []),
                    "--format",
                    "pylock.toml",
                    "--python-version",
                    python_version,
                    "--python-platform",
                    uv_platform(platform),
                    "--constraints",
                    folder / "constraints.txt",
                    "--output-file",
                    folder / "pylock.toml",
                    folder / "requirements.in",
                ],
                what=f"resolving the pip requirements {', '.join(requirements)} for {platform}",
                env=index_environ(pypi, os.environ),
                hint="check the names and versions in `pip:`, and that PyPI (or your index) is"
                " reachable.",
            )
        except CommandFailedError as exc:
            raise SolveError(exc.message, hint=exc.hint) from None
        data = tomllib.loads((folder / "pylock.toml").read_text(encoding="utf-8"))
    records = [_record_from(p, no_deps=no_deps) for p in data.get("packages", [])]
    return sorted((r for r in records if r.name not in provided), key=lambda r: r.name)


def install_pip(
    prefix: Path,
    records: Sequence[PipRecord],
    *,
    env: Mapping[str, str],
    pypi: PypiOptions | None = None,
) -> None:
    """Install exactly ``records`` into ``prefix`` (no deps, hashes required, nothing removed).

    The records are URLs without credentials: uv sends those of an index (``pypi``, else the
    user's variables, netrc or keyring) to the files of the same host.
    """
    if not records:
        return
    with tempfile.TemporaryDirectory(prefix="cema-pip-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(
            "".join(f"{r.name} @ {r.url} --hash=sha256:{r.sha256}\n" for r in records),
            encoding="utf-8",
        )
        _installing(
            [
                uv_bin(),
                "pip",
                "install",
                "--quiet",
                "--no-progress",
                "--no-deps",
                "--require-hashes",
                "--python",
                venv_python(prefix),
                "-r",
                req,
            ],
            what=f"installing the pip layer into {prefix}",
            # the activated environment names the env (``CEMA_ENV``)
            installing=f"the pip layer of environment {env['CEMA_ENV']!r}"
            if env.get("CEMA_ENV")
            else f"the pip layer of {prefix}",
            where=prefix.parent.parent,  # the store: envs/ is directly under it
            env=index_environ(pypi, env),  # PIP_CERT and the like: downloads as when locking
            hint="a download failed or a hash did not match the lock.",
        )


def installed_distributions(prefix: Path) -> dict[str, str]:
    """What ``uv pip list`` reports in a prefix (name → version); for tests and diagnostics."""
    out = _proc.run(
        [uv_bin(), "pip", "list", "--format", "json", "--python", venv_python(prefix)],
        what=f"listing the packages of {prefix}",
    )
    return {canonicalize_name(d["name"]): d["version"] for d in json.loads(out.stdout)}
