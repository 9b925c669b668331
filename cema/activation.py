"""The environment variables of an activated env: PATH, CONDA_PREFIX, activate.d, spec variables."""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cema import _proc
from cema._fs import atomic_write

log = logging.getLogger(__name__)

#: Cached at build time: prefixes never change once published, so neither do their scripts.
ACTIVATION_CACHE = ".cema-activation.json"
SCRIPT_TIMEOUT_S = 60.0


def path_entries(prefix: Path, kind: str) -> list[str]:
    """The folders an activated env puts in front of PATH."""
    if sys.platform == "win32":
        if kind == "venv":
            return [str(prefix / "Scripts")]
        return [
            str(prefix),
            str(prefix / "Library" / "mingw-w64" / "bin"),
            str(prefix / "Library" / "usr" / "bin"),
            str(prefix / "Library" / "bin"),
            str(prefix / "Scripts"),
            str(prefix / "bin"),
        ]
    return [str(prefix / "bin")]


def _env_vars_d(prefix: Path) -> dict[str, str]:
    """Variables from ``etc/conda/env_vars.d/*.json`` (the declarative form packages use)."""
    out: dict[str, str] = {}
    folder = prefix / "etc" / "conda" / "env_vars.d"
    if folder.is_dir():
        for file in sorted(folder.glob("*.json")):
            try:
                data = json.loads(file.read_text("utf-8"))
            except (OSError, ValueError):
                log.warning("ignoring unreadable %s", file)
                continue
            out.update({str(k): str(v) for k, v in data.items()})
    return out


_MARK = "\0__cema_activation__\0"


def _scripts(prefix: Path) -> list[Path]:
    folder = prefix / "etc" / "conda" / "activate.d"
    if sys.platform == "win32" or not folder.is_dir():
        return []
    return sorted(folder.glob("*.sh"))


def _parse_env0(blob: str) -> dict[str, str]:
    out = {}
    for item in blob.split("\0"):
        key, sep, value = item.partition("=")
        if sep and key:
            out[key] = value
    return out


def run_scripts(prefix: Path, env: Mapping[str, str]) -> dict[str, str] | None:
    """The environment after sourcing the prefix's ``activate.d`` scripts on top of ``env``.

    The scripts run in bash against the real environment (so ``CFLAGS="... $CFLAGS"`` keeps the
    user's value), the environment is read with ``env -0`` before and after (no interpreter in
    between to add variables of its own), and what the scripts print goes to stderr. None when
    there is no bash or a script fails (with a warning).
    """
    scripts = _scripts(prefix)
    bash = shutil.which("bash")
    if not scripts or bash is None:
        return dict(env)
    source = "; ".join(f". {shlex.quote(str(s))}" for s in scripts)
    mark = _MARK.replace("\0", "\\0")  # as printf writes it
    command = f'env -0; printf "{mark}"; {{ {source}; }} 1>&2; env -0'
    try:
        out = subprocess.run(
            [bash, "--noprofile", "--norc", "-c", command],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
            check=True,
            # a killed `cema sync` takes its activation scripts with it (Linux parent-death)
            preexec_fn=_proc.die_with_parent(),
        )
        before_blob, _, after_blob = out.stdout.partition(_MARK)
    except (subprocess.SubprocessError, OSError) as exc:
        log.warning("the activation scripts in %s failed (%s); ignoring them", prefix, exc)
        return None
    before, after = _parse_env0(before_blob), _parse_env0(after_blob)
    result = dict(env)
    for key in before.keys() - after.keys():  # unset by a script
        result.pop(key, None)
    result.update({k: v for k, v in after.items() if before.get(k) != v})
    return result


def compute_activation(prefix: Path, kind: str) -> dict[str, Any]:
    """What activating ``prefix`` needs: fixed variables, and whether scripts must run."""
    if kind == "venv":
        return {"static": {"VIRTUAL_ENV": str(prefix)}, "scripts": False}
    static = {"CONDA_PREFIX": str(prefix), **_env_vars_d(prefix)}
    return {"static": static, "scripts": bool(_scripts(prefix))}


def write_activation_cache(prefix: Path, kind: str) -> None:
    """Record what activation needs inside the prefix (called before its receipt is written).

    The scripts also run once here, in a minimal environment, so that one that fails is
    reported when the prefix is built rather than at every activation.
    """
    found = compute_activation(prefix, kind)
    if found["scripts"]:
        base = {
            "PATH": os.pathsep.join([*path_entries(prefix, kind), os.environ.get("PATH", "")]),
            "CONDA_PREFIX": str(prefix),
            "HOME": os.environ.get("HOME", ""),
        }
        run_scripts(prefix, base)
    atomic_write(prefix / ACTIVATION_CACHE, json.dumps(found, sort_keys=True))


def activated_environ(
    prefix: Path,
    *,
    kind: str,
    name: str,
    variables: Sequence[tuple[str, str]] | Mapping[str, str] = (),
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with the env at ``prefix`` activated."""
    env = dict(os.environ if base is None else base)
    try:
        cached = json.loads((prefix / ACTIVATION_CACHE).read_text("utf-8"))
        static, scripts = dict(cached["static"]), bool(cached["scripts"])
    except (OSError, ValueError, KeyError, TypeError):
        found = compute_activation(prefix, kind)
        static, scripts = found["static"], found["scripts"]
    for key in ("PYTHONHOME", "PYTHONPATH", "__PYVENV_LAUNCHER__"):
        env.pop(key, None)
    if kind == "venv":
        env.pop("CONDA_PREFIX", None)
    else:
        env.pop("VIRTUAL_ENV", None)
        env["CONDA_DEFAULT_ENV"] = name
    env.update(static)
    env["PATH"] = os.pathsep.join([*path_entries(prefix, kind), env.get("PATH", "")]).rstrip(
        os.pathsep
    )
    env["CEMA_ENV"] = name
    if scripts:
        env = run_scripts(prefix, env) or env
    items = variables.items() if isinstance(variables, Mapping) else variables
    env.update({str(k): str(v) for k, v in items})
    return env
