"""The micromamba engine: runs a whole plan as a rendered script; finds or downloads micromamba."""

# The design choice, "a kill never leaves a prefix that looks ready": micromamba cannot install
# into one folder with another folder's path patched in, so a script builds each prefix in place
# at its final, content-addressed path ``envs/<address>``, under the same per-prefix lock file
# (``locks/<address>.lock``, taken with ``flock``) that the embedded engine uses. Once the lock is
# held the receipt is checked again; a prefix without a receipt is an interrupted build and is
# removed first; the receipt (the same JSON as the embedded engine's, rendered by Python) is
# written last, atomically. A failing step stops the script (``set -euo pipefail`` /
# ``$ErrorActionPreference = 'Stop'`` and exit-code checks) and removes the unfinished prefix;
# after a kill it stays without a receipt, so nothing reuses it and the next build clears it.
#
# micromamba keeps its own package cache in ``<store>/micromamba/pkgs`` (its root prefix).
# Solving (``cema lock``) goes through the embedded solver: the lock is the same whichever engine
# builds it. Scripts need micromamba 2 (``#sha256:`` in explicit files) and uv for pip layers and
# venvs. Credentials in channel URLs are never written into scripts: each becomes an environment
# variable (``CEMA_CHANNEL_AUTH_<n>``, ``CEMA_CHANNEL_TOKEN_<n>``) the script's header names.

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cema import _proc
from cema.engines.base import NullReporter, Reporter
from cema.errors import EngineError, EngineUnavailableError
from cema.lock import CondaRecord
from cema.plan import Plan
from cema.render import DONE_MARKER, ResolvedEnv, Shell, render_script
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
        raise EngineUnavailableError(
            f"{source} names {path}, which is not an executable file.",
            hint=_PROVIDE_HINT.format(where=where),
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
    from cema.spec import current_platform

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
    """What ``micromamba --version`` prints (``2.9.0``)."""
    out = _proc.run([binary, "--version"], what=f"{binary} --version", timeout_s=VERSION_TIMEOUT_S)
    return out.stdout.strip().splitlines()[-1].strip() if out.stdout.strip() else ""


def default_shell() -> Shell:
    """PowerShell on Windows, bash elsewhere."""
    return "powershell" if sys.platform == "win32" else "bash"


def _shell_command(shell: Shell, script: Path) -> list[str]:
    if shell == "bash":
        bash = shutil.which("bash")
        if bash is None:
            raise EngineUnavailableError(
                "bash was not found: the micromamba engine runs bash scripts on this system.",
                hint="install bash, or use the embedded engine (--engine rattler).",
            )
        return [bash, str(script)]
    pwsh = shutil.which("pwsh") or shutil.which("powershell")
    if pwsh is None:
        raise EngineUnavailableError(
            "PowerShell was not found: the micromamba engine runs PowerShell scripts on Windows.",
            hint="install PowerShell, or use the embedded engine (--engine rattler).",
        )
    flags = ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"]
    return [pwsh, *flags, str(script)]


class MicromambaEngine:
    """Builds prefixes by running the plan's micromamba script; solves with the embedded solver."""

    name = "micromamba"

    def __init__(
        self,
        *,
        binary: Path | str | None = None,
        download: bool = True,
        base_url: str | None = None,
        shell: Shell | None = None,
    ) -> None:
        self.binary = Path(binary) if binary else None
        self.download = download
        self.base_url = base_url
        self.shell: Shell = shell or default_shell()
        self._solver: object | None = None

    def solve(
        self,
        *,
        specs: Sequence[str],
        channels: Sequence[str],
        platform: str,
        locked: Sequence[CondaRecord] = (),
    ) -> list[CondaRecord]:
        """Resolve with the embedded solver (the lock does not depend on the engine)."""
        from cema.engines.rattler import RattlerEngine

        if not isinstance(self._solver, RattlerEngine):
            self._solver = RattlerEngine()
        return self._solver.solve(specs=specs, channels=channels, platform=platform, locked=locked)

    def find(
        self,
        *,
        spec: str,
        channels: Sequence[str],
        platform: str,
        locked: Sequence[CondaRecord] = (),
    ) -> CondaRecord | None:
        """Look up with the embedded engine (the lock does not depend on the engine)."""
        from cema.engines.rattler import RattlerEngine

        if not isinstance(self._solver, RattlerEngine):
            self._solver = RattlerEngine()
        return self._solver.find(spec=spec, channels=channels, platform=platform, locked=locked)

    def install(
        self,
        *,
        records: Sequence[CondaRecord],
        staging: Path,
        final: Path,
        package_cache: Path,
        platform: str,
        reporter: Reporter,
    ) -> None:
        """Not used: micromamba cannot build in staging for another path (see ``run_plan``)."""
        raise EngineError(
            "the micromamba engine builds whole plans in place (run_plan), not in staging."
        )

    def locate(self, store: Store) -> Path:
        """The micromamba binary this engine runs (found, or downloaded into the store)."""
        binary = find_micromamba(
            explicit=self.binary, store=store, download=self.download, base_url=self.base_url
        )
        version = micromamba_version(binary)
        try:
            major = int(version.split(".", 1)[0])
        except ValueError:
            major = MIN_MAJOR_VERSION  # an unusual version string: let the script decide
        if major < MIN_MAJOR_VERSION:
            raise EngineUnavailableError(
                f"{binary} is micromamba {version}; Cema's scripts need micromamba 2 or newer.",
                hint=_PROVIDE_HINT.format(where=stored_binary(store)),
            )
        self.binary = binary
        return binary

    def run_plan(
        self,
        *,
        store: Store,
        plan: Plan,
        envs: Sequence[ResolvedEnv],
        reporter: Reporter | None = None,
    ) -> None:
        """Render ``plan`` as a script and run it, streaming its output (builds and removals)."""
        from cema.engines.uv import uv_bin

        reporter = reporter or NullReporter()
        binary = self.locate(store)
        script = render_script(
            plan, envs, store_root=str(store.root), shell=self.shell, created=time.time()
        )
        suffix = ".sh" if self.shell == "bash" else ".ps1"
        env = {
            **os.environ,
            "CEMA_MICROMAMBA": str(binary),
            "CEMA_UV": str(uv_bin()),
            "CEMA_HOOK_PYTHON": sys.executable,
            **script.secrets,
        }
        with tempfile.TemporaryDirectory(prefix="cema-mm-") as tmp:
            path = Path(tmp) / f"sync{suffix}"
            path.write_text(script.text, encoding="utf-8")

            def on_line(line: str) -> None:
                log.info("%s", line)
                if line.startswith(DONE_MARKER):
                    reporter.advance(step=line[len(DONE_MARKER) :])

            _proc.stream(
                _shell_command(self.shell, path),
                what="the micromamba script",
                env=env,
                on_line=on_line,
                hint="`cema plan --script "
                + self.shell
                + "` prints the script: run it by hand to see each step.",
            )


def _hook(argv: Sequence[str]) -> int:
    """Steps a script asks of Cema: ``activation-cache PREFIX KIND``."""
    if len(argv) == 3 and argv[0] == "activation-cache":
        from cema.activation import write_activation_cache

        write_activation_cache(Path(argv[1]), argv[2])
        return 0
    sys.stderr.write("usage: python -m cema.engines.micromamba activation-cache PREFIX KIND\n")
    return 2


if __name__ == "__main__":
    sys.exit(_hook(sys.argv[1:]))
