"""Render a plan as a standalone bash or PowerShell script that builds it with micromamba."""

from __future__ import annotations

from collections.abc import Sequence

from cema.engines.micromamba.bash import _bash_build, _bash_remove, _render_bash
from cema.engines.micromamba.common import (
    DONE_MARKER,
    ENGINE_NAME,
    MICROMAMBA_ROOT,
    SHELLS,
    InterpreterLike,
    ResolvedEnv,
    Script,
    Shell,
    _Secrets,
    bash_quote,
    explicit_lines,
    install_order,
    pip_lines,
    powershell_quote,
    receipt_for,
)
from cema.engines.micromamba.powershell import _ps_build, _ps_remove, _render_powershell
from cema.model.plan import Create, Plan, Remove, Reuse, Update

__all__ = [
    "DONE_MARKER",
    "ENGINE_NAME",
    "MICROMAMBA_ROOT",
    "SHELLS",
    "InterpreterLike",
    "ResolvedEnv",
    "Script",
    "Shell",
    "bash_quote",
    "explicit_lines",
    "install_order",
    "pip_lines",
    "powershell_quote",
    "receipt_for",
    "render_script",
]

# --- the entry point ----------------------------------------------------------------------


def render_script(
    plan: Plan,
    envs: Sequence[ResolvedEnv],
    *,
    store_root: str,
    shell: Shell,
    created: float = 0.0,
) -> Script:
    """The script carrying out ``plan`` in the store at ``store_root`` (pure: no I/O).

    ``envs`` holds the resolved content of every env the plan builds; ``created`` is the time
    written into the receipts.
    """
    if shell not in SHELLS:
        raise ValueError(f"unknown shell {shell!r}: use one of {', '.join(SHELLS)}")
    by_env = {e.env: e for e in envs}
    secrets = _Secrets()
    build = _bash_build if shell == "bash" else _ps_build
    remove = _bash_remove if shell == "bash" else _ps_remove
    body: list[str] = []
    for action in plan.actions:
        match action:
            case Create(env=env):
                body += build(by_env[env], label="create", secrets=secrets, created=created)
            case Update(build=True, env=env):
                body += build(by_env[env], label="update", secrets=secrets, created=created)
            case Update(env=env, address=address):
                body.append(f"# --- update {env}: reuse {address}, already in the store\n")
            case Reuse(env=env, address=address):
                body.append(f"# --- reuse {env}: {address} is up to date\n")
            case Remove(address=address, was=was):
                body += remove(address, was)
    variables = dict(secrets.descriptions)
    if shell == "bash":
        text = _render_bash(body, store_root=store_root, variables=variables)
    else:
        text = _render_powershell(body, store_root=store_root, variables=variables)
    return Script(shell=shell, text=text, secrets=dict(secrets.values), variables=variables)
