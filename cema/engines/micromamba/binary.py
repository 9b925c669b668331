"""The micromamba binary: found (flag, env var, PATH, store) or downloaded pinned and verified."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cema import _proc
from cema.errors import CommandFailedError, EngineUnavailableError
from cema.store import Store

log = logging.getLogger(__name__)

#: The release downloaded when no micromamba is found (github.com/mamba-org/micromamba-releases).
MICROMAMBA_VERSION = "2.9.0-0"
DEFAULT_BASE_URL = "https://github.com/mamba-org/micromamba-releases/releases/download"
#: ``CEMA_MICROMAMBA_BASE_URL`` replaces :data:`DEFAULT_BASE_URL` (a mirror, or a test server)
BASE_URL_VARIABLE = "CEMA_MICROMAMBA_BASE_URL"
DOWNLOAD_TIMEOUT_S = 60.0
DOWNLOAD_LOCK_TIMEOUT_S = 600.0
VERSION_TIMEOUT_S = 30.0
MIN_MAJOR_VERSION = 2
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, kw_only=True, slots=True)
class Pin:
    """One pinned release file: its name in the release and its sha256."""

    asset: str
    sha256: str


#: The single-file binaries of :data:`MICROMAMBA_VERSION`, by conda platform.
PINS: Mapping[str, Pin] = {
    "linux-64": Pin(
        asset="micromamba-linux-64",
        sha256="366cd9cd8be14df1ab8ed50352a82111082a36686b2d389fdb79a92c3fafb3e3",
    ),
    "linux-aarch64": Pin(
        asset="micromamba-linux-aarch64",
        sha256="9f93b974adcb4d166996af969b6cd371287d1a3e52733704727884d9b74cb7a7",
    ),
    "osx-64": Pin(
        asset="micromamba-osx-64",
        sha256="1e71054bb3ac9a076e21f7ec48acfef536f9b3f1408f371a942784bf5ef83d8a",
    ),
    "osx-arm64": Pin(
        asset="micromamba-osx-arm64",
        sha256="ec2a072f028e1a7cf20f3e2e74d5a8127cf5a5f27636375b5359811565f4e5be",
    ),
    "win-64": Pin(
        asset="micromamba-win-64.exe",
        sha256="a6d804394b2418991c4e29562853eaace2f2ce9d9da661a98e74e02e8dbb44b0",
    ),
}

_PROVIDE_HINT = (
    "pass --micromamba PATH, set CEMA_MICROMAMBA, put micromamba on PATH, or copy it to {where}"
    " (or use the embedded engine: --engine rattler)."
)


def executable_name() -> str:
    """``micromamba.exe`` on Windows, else ``micromamba``."""
    return "micromamba.exe" if sys.platform == "win32" else "micromamba"


def _usable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _checked(path: Path, source: str, where: Path) -> Path:
    if not _usable(path):
        what = (
            "which does not exist"
            if not path.exists()
            else "which is a folder, not the micromamba binary"
            if path.is_dir()
            else "which is not executable (no execute permission)"
            if path.is_file()
            else "which is not a regular file"
        )
        raise EngineUnavailableError(
            f"{source} names {path}, {what}.", hint=_PROVIDE_HINT.format(where=where)
        )
    return path


def stored_binary(store: Store) -> Path:
    """Where the store keeps its own micromamba."""
    return store.root / "bin" / executable_name()


def find_micromamba(
    *,
    explicit: Path | str | None = None,
    store: Store,
    download: bool = True,
    base_url: str | None = None,
    platform: str | None = None,
) -> Path:
    """The micromamba to use: ``explicit``, ``$CEMA_MICROMAMBA``, PATH, the store, a download."""
    where = stored_binary(store)
    if explicit:
        return _checked(Path(explicit).expanduser(), "--micromamba", where)
    if os.environ.get("CEMA_MICROMAMBA"):
        return _checked(Path(os.environ["CEMA_MICROMAMBA"]).expanduser(), "CEMA_MICROMAMBA", where)
    on_path = shutil.which("micromamba")
    if on_path:
        return Path(on_path)
    if _usable(where):
        return where
    if not download:
        raise EngineUnavailableError(
            "micromamba was not found.", hint=_PROVIDE_HINT.format(where=where)
        )
    from cema.model.spec import current_platform

    return download_micromamba(where, platform=platform or current_platform(), base_url=base_url)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def download_micromamba(
    target: Path,
    *,
    platform: str,
    base_url: str | None = None,
    pin: Pin | None = None,
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download the pinned release to ``target``: sha256 checked, installed atomically, locked.

    ``pin`` replaces the pinned file for ``platform`` (tests); the URL is
    ``<base_url>/<MICROMAMBA_VERSION>/<asset>``.
    """
    import filelock
    import requests

    hint = _PROVIDE_HINT.format(where=target)
    pin = pin or PINS.get(platform)
    if pin is None:
        raise EngineUnavailableError(f"Cema has no pinned micromamba for {platform}.", hint=hint)
    base = (base_url or os.environ.get(BASE_URL_VARIABLE) or DEFAULT_BASE_URL).rstrip("/")
    url = f"{base}/{MICROMAMBA_VERSION}/{pin.asset}"
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / ".micromamba.lock"
    with filelock.FileLock(str(lock_path), timeout=DOWNLOAD_LOCK_TIMEOUT_S):
        if _usable(target) and _sha256_of(target) == pin.sha256:
            return target  # another process installed it while we waited
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            log.info("downloading micromamba %s from %s", MICROMAMBA_VERSION, url)
            digest = hashlib.sha256()
            try:
                with requests.get(url, stream=True, timeout=timeout_s) as response:
                    response.raise_for_status()
                    with tmp.open("wb") as fh:
                        for block in response.iter_content(_CHUNK_BYTES):
                            digest.update(block)
                            fh.write(block)
            except requests.RequestException as exc:
                raise EngineUnavailableError(
                    f"micromamba could not be downloaded from {url} ({exc}).", hint=hint
                ) from None
            if digest.hexdigest() != pin.sha256:
                raise EngineUnavailableError(
                    f"the file downloaded from {url} has sha256 {digest.hexdigest()}, not the"
                    f" pinned {pin.sha256}: it was not installed.",
                    hint=hint,
                )
            tmp.chmod(0o755)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    log.info("installed micromamba %s at %s", MICROMAMBA_VERSION, target)
    return target


def micromamba_version(binary: Path) -> str:
    """What ``micromamba --version`` prints (``2.9.0``).

    ``EngineUnavailableError`` when ``binary`` does not run (not a program for this machine, no
    permission) or fails to answer.
    """
    hint = "pass --micromamba PATH to a micromamba 2 for this machine (or --engine rattler)."
    try:
        out = _proc.run(
            [binary, "--version"], what=f"{binary} --version", timeout_s=VERSION_TIMEOUT_S
        )
    except OSError as exc:  # not a program this machine runs (ENOEXEC), no permission (EACCES)
        raise EngineUnavailableError(
            f"{binary} could not be run as micromamba ({exc.strerror or exc}).", hint=hint
        ) from None
    except CommandFailedError as exc:
        why = exc.message.splitlines()[0].rstrip(":")
        raise EngineUnavailableError(
            f"{binary} does not answer `--version` as micromamba does ({why}).", hint=hint
        ) from None
    return out.stdout.strip().splitlines()[-1].strip() if out.stdout.strip() else ""
