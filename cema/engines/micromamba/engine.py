"""The micromamba builder: one prefix's conda layer with ``micromamba create --relocate-prefix``."""

# micromamba 2 builds in staging for the final path: ``--prefix STAGING --relocate-prefix FINAL``
# writes the files into STAGING with FINAL in every prefix placeholder (text and binary), in the
# shebangs of entry points and in the pkg-config files, so the sync's rename publishes the prefix
# atomically, exactly as with the embedded engine. Checked with micromamba 2.8.1: after the rename
# `bin/xz` of conda-forge runs, and the only file naming STAGING is ``conda-meta/history`` (its
# ``# cmd:`` line logs the command as it was run). micromamba also appends STAGING to
# ``~/.conda/environments.txt`` (``register_envs`` cannot be turned off from its command line);
# conda and mamba drop entries that no longer exist when they read that file.
#
# The package cache is micromamba's own (its layout is not rattler's): ``pkgs`` in its root
# prefix ``<store>/micromamba``, the folder the sync hands over as ``step.package_cache``, which
# is also the root prefix of ``cema plan --script``. Solving never goes through micromamba: the
# lock is the same whichever engine builds it. micromamba checks every archive's sha256 against
# the ``#sha256:`` of the explicit file (which needs micromamba 2: hence the version check).

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

from cema import _proc
from cema.engines.builder import BuildStep, Reporter
from cema.engines.micromamba.binary import (
    _PROVIDE_HINT,
    MIN_MAJOR_VERSION,
    find_micromamba,
    micromamba_version,
    stored_binary,
)
from cema.engines.micromamba.common import MAMBA_COPY, explicit_lines
from cema.errors import CommandFailedError, EngineUnavailableError
from cema.store import Store

log = logging.getLogger(__name__)

#: what micromamba prints as it links each package (``Linking xz-5.2.6-h166bdaf_0``)
_LINKING = "Linking "


class MicromambaEngine:
    """A ``Builder`` that runs ``micromamba create`` from the lock's exact URLs and hashes."""

    name = "micromamba"

    def __init__(
        self,
        *,
        binary: Path | str | None = None,
        store: Store | None = None,
        download: bool = True,
        base_url: str | None = None,
    ) -> None:
        self.binary = Path(binary) if binary else None
        #: where a missing binary is looked for and downloaded to (default: the store built in)
        self.store = store
        self.download = download
        self.base_url = base_url
        self._checked: Path | None = None

    def locate(self, store: Store) -> Path:
        """The micromamba binary this engine runs (found, or downloaded into the store)."""
        if self._checked is not None:
            return self._checked
        binary = find_micromamba(
            explicit=self.binary, store=store, download=self.download, base_url=self.base_url
        )
        version = micromamba_version(binary)
        try:
            major = int(version.split(".", 1)[0])
        except ValueError:
            major = MIN_MAJOR_VERSION  # an unusual version string: let micromamba decide
        if major < MIN_MAJOR_VERSION:
            raise EngineUnavailableError(
                f"{binary} is micromamba {version}; Cema's micromamba engine and scripts need"
                " micromamba 2 or newer.",
                hint=_PROVIDE_HINT.format(where=stored_binary(store)),
            )
        self.binary = self._checked = binary
        return binary

    def build(self, *, step: BuildStep, reporter: Reporter) -> None:
        """Install into ``staging`` with ``final`` patched into every file (rename to publish)."""
        # the sync's package cache for this builder is <store>/micromamba: its parent is the store
        try:
            binary = self.locate(self.store or Store(step.package_cache.parent))
        except EngineUnavailableError as exc:
            raise EngineUnavailableError(
                f"environment {step.env!r} cannot be built with micromamba: {exc.message}",
                hint=exc.hint,
            ) from None
        root = step.package_cache
        root.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MAMBA_ROOT_PREFIX": str(root),
            # the store's cache, not one from a user's .condarc (nor ~/.mamba/pkgs beside it)
            "CONDA_PKGS_DIRS": str(root / "pkgs"),
        }
        records = step.records
        reporter.start(total=len(records), label=f"installing {len(records)} packages")
        # the explicit file may hold channel credentials: a private temporary folder, removed
        with tempfile.TemporaryDirectory(prefix="cema-mm-") as tmp:
            explicit = Path(tmp) / "explicit.txt"
            lines = explicit_lines(records, platform=step.platform)
            explicit.write_text("\n".join(lines) + "\n", encoding="utf-8")
            argv: list[str | Path] = [
                binary,
                "create",
                "--yes",
                "--root-prefix",
                root,
                "--prefix",
                step.staging,
                "--relocate-prefix",
                step.final,
                "--file",
                explicit,
            ]
            if step.link == "copy":  # files of the prefix's own, none shared with the cache
                argv.append(MAMBA_COPY.strip())

            def on_line(line: str) -> None:
                log.info("%s", line)
                if line.startswith(_LINKING):
                    reporter.advance(step=line[len(_LINKING) :].strip())

            try:
                _proc.stream(
                    argv,
                    what=f"micromamba create for environment {step.env!r}",
                    env=env,
                    on_line=on_line,
                )
            except CommandFailedError as exc:
                raise _failed(step.env, exc) from None
            finally:
                reporter.finish()


#: micromamba's own error lines (``error    libmamba ...``, ``critical libmamba ...``)
_ERROR_LINE = re.compile(r"^(?:error|critical)\s+libmamba\s+(?P<message>.+)$")
#: the longest cause put in the one ``error:`` line (the whole output is logged, ``-v``)
_MAX_CAUSE_CHARS = 400


def micromamba_cause(output: str) -> str:
    """The cause in micromamba's output: its error lines, joined; else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    found = [m["message"].strip() for m in map(_ERROR_LINE.match, lines) if m is not None]
    cause = "; ".join(dict.fromkeys(found)) or (lines[-1] if lines else "no output")
    return cause if len(cause) <= _MAX_CAUSE_CHARS else cause[: _MAX_CAUSE_CHARS - 3] + "..."


def _failed(env: str, exc: CommandFailedError) -> CommandFailedError:
    """One line naming ``env`` and the cause; micromamba's output stays in ``output_tail``."""
    code = f"exit code {exc.returncode}" if exc.returncode is not None else "did not start"
    cause = micromamba_cause(exc.output_tail) if exc.output_tail else exc.message
    error = CommandFailedError(
        f"micromamba could not build environment {env!r} ({code}): {cause}",
        returncode=exc.returncode,
        hint="`cema -v sync` shows micromamba's output. Run `cema sync` again; if it fails the"
        " same way, the locked records cannot be installed as they are (a changed channel:"
        " `cema lock --upgrade`), or use the embedded engine (--engine rattler).",
    )
    error.output_tail = exc.output_tail  # the detail, for callers of the library
    return error
