"""The environment variables of an activated env: PATH, CONDA_PREFIX, activate.d, spec variables."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

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


def _script_variables(prefix: Path, base: Mapping[str, str]) -> dict[str, str]:
    """Variables the ``etc/conda/activate.d`` shell scripts set (run once, in bash)."""
    folder = prefix / "etc" / "conda" / "activate.d"
    scripts = sorted(folder.glob("*.sh")) if folder.is_dir() else []
    bash = shutil.which("bash")
    if not scripts or sys.platform == "win32" or bash is None:
        return {}
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    source = "; ".join(f'. "{s}"' for s in scripts)
    command = f"{source}; exec \"{sys.executable}\" -c '{dump}'"
    try:
        out = subprocess.run(
            [bash, "--noprofile", "--norc", "-c", command],
            env=dict(base),
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
            check=True,
        )
        after: dict[str, str] = json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError) as exc:
        log.warning("the activation scripts in %s failed (%s); ignoring them", folder, exc)
        return {}
    return {k: v for k, v in after.items() if base.get(k) != v and k not in ("_", "SHLVL", "PWD")}


def compute_activation(prefix: Path, kind: str) -> dict[str, str]:
    """What activating ``prefix`` sets, apart from PATH and the spec's variables."""
    if kind == "venv":
        return {"VIRTUAL_ENV": str(prefix)}
    base = {
        "PATH": os.pathsep.join([*path_entries(prefix, kind), os.environ.get("PATH", "")]),
        "CONDA_PREFIX": str(prefix),
        "HOME": os.environ.get("HOME", ""),
    }
    found = {"CONDA_PREFIX": str(prefix), **_env_vars_d(prefix)}
    found.update({k: v for k, v in _script_variables(prefix, base).items() if k != "PATH"})
    return found


def write_activation_cache(prefix: Path, kind: str) -> None:
    """Store the activation variables inside the prefix (called before its receipt is written)."""
    (prefix / ACTIVATION_CACHE).write_text(
        json.dumps(compute_activation(prefix, kind), sort_keys=True), encoding="utf-8"
    )


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
        extra = json.loads((prefix / ACTIVATION_CACHE).read_text("utf-8"))
    except (OSError, ValueError):
        extra = compute_activation(prefix, kind)
    for key in ("PYTHONHOME", "PYTHONPATH", "__PYVENV_LAUNCHER__"):
        env.pop(key, None)
    if kind == "venv":
        env.pop("CONDA_PREFIX", None)
    else:
        env.pop("VIRTUAL_ENV", None)
        env["CONDA_DEFAULT_ENV"] = name
    env.update(extra)
    env["PATH"] = os.pathsep.join([*path_entries(prefix, kind), env.get("PATH", "")]).rstrip(
        os.pathsep
    )
    env["CEMA_ENV"] = name
    items = variables.items() if isinstance(variables, Mapping) else variables
    env.update({str(k): str(v) for k, v in items})
    return env
