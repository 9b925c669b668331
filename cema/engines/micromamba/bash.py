"""Plans as bash scripts (Linux, macOS): set -euo pipefail, flock, receipts last."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cema.engines.micromamba.common import (
    DONE_MARKER,
    MAMBA_COPY,
    MICROMAMBA_ROOT,
    UV_COPY,
    ResolvedEnv,
    _bash_word,
    _Part,
    _python_in,
    _Secrets,
    bash_quote,
    explicit_lines,
    pip_lines,
    receipt_for,
)
from cema.store import RECEIPT_NAME

# --- bash ---------------------------------------------------------------------------------

_BASH_HEAD = r"""set -euo pipefail

MAMBA="${CEMA_MICROMAMBA:-micromamba}"
UV="${CEMA_UV:-uv}"
ROOT="$STORE/__ROOT__"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cema-script.XXXXXX")"
BUILDING=""
cema_exit() {  # on any failure: drop the unfinished prefix (it has no receipt) and the temp files
  if [ -n "$BUILDING" ]; then rm -rf "$BUILDING"; fi
  rm -rf "$WORK"
}
trap cema_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$STORE/envs" "$STORE/locks"

cema_lock() {  # hold the prefix lock of address $1 on fd 9: the same file cema itself locks
  exec 9>>"$STORE/locks/$1.lock"
  if command -v flock >/dev/null 2>&1; then
    flock 9
  else
    echo "cema: flock is not installed: building $1 unlocked (run one sync at a time)" >&2
  fi
}
cema_unlock() { exec 9>&-; }
cema_ready() {  # does the prefix of address $1 have its receipt (written last)?
  grep -qs "\"address\": \"$1\"" "$STORE/envs/$1/__RECEIPT__"
}
cema_clear() {  # remove what an interrupted build of $1 left (we hold its lock)
  if [ -e "$STORE/envs/$1" ]; then
    echo "cema: removing the unfinished prefix $STORE/envs/$1"
    rm -rf "$STORE/envs/$1"
  fi
}
cema_receipt() {  # the last step of a build: the receipt, written atomically
  printf '%s' "$2" >"$STORE/envs/$1/__RECEIPT__.tmp"
  mv -f "$STORE/envs/$1/__RECEIPT__.tmp" "$STORE/envs/$1/__RECEIPT__"
  BUILDING=""
}
cema_hook() {  # set by `cema sync`: cache the activation variables (else computed on first use)
  if [ -n "${CEMA_HOOK_PYTHON:-}" ]; then "$CEMA_HOOK_PYTHON" -m cema.engines.micromamba "$@"; fi
}
"""


def _bash_lines(parts_lines: Sequence[Sequence[_Part]], target: str) -> list[str]:
    words = [f"  {_bash_word(parts)} \\" for parts in parts_lines]
    return ["printf '%s\\n' \\", *words, f"  >{target}"]


def _bash_build(item: ResolvedEnv, *, label: str, secrets: _Secrets, created: float) -> list[str]:
    a = item.address
    content = item.content
    copy = item.link == "copy"
    prefix = f'"$STORE/envs/{a}"'
    python = '"' + _python_in(f"$STORE/envs/{a}", content, "/") + '"'
    out = [
        f"# --- {label} {item.env} ({content.kind}, {content.platform}):"
        f" {len(content.conda)} conda, {len(content.pip)} pip package(s)",
        f"echo {bash_quote('==> ' + label + ' ' + item.env)}",
        f"cema_lock {a}",
        f"if cema_ready {a}; then",
        f'  echo "cema: $STORE/envs/{a} was built by another sync meanwhile"',
        "else",
        f"  cema_clear {a}",
        f'  BUILDING="$STORE/envs/{a}"',
    ]
    body: list[str] = []
    if content.kind == "venv":
        assert item.interpreter is not None, "a venv needs its base interpreter"
        body += [
            'UV_PYTHON_DOWNLOADS=never VIRTUAL_ENV="" "$UV" venv --relocatable --python '
            f"{bash_quote(str(item.interpreter.path))} {prefix}",
        ]
    else:
        lines = explicit_lines(content.conda, platform=content.platform)
        body += _bash_lines([secrets.split(line) for line in lines], f'"$WORK/{a}.explicit.txt"')
        body.append(
            f'"$MAMBA" create --yes --root-prefix "$ROOT" --prefix {prefix}'
            f' --file "$WORK/{a}.explicit.txt"' + (MAMBA_COPY if copy else "")
        )
    if content.pip:
        body += _bash_lines(
            [secrets.split(line) for line in pip_lines(content.pip)], f'"$WORK/{a}.pip.txt"'
        )
        install = (
            f'"$UV" pip install --no-progress --no-deps --require-hashes --python {python}'
            f' -r "$WORK/{a}.pip.txt"' + (UV_COPY if copy else "")
        )
        if content.kind == "venv":
            body.append(f"VIRTUAL_ENV={prefix} {install}")
        else:  # in the activated env, as the embedded engine does
            body.append(f'"$MAMBA" run --root-prefix "$ROOT" --prefix {prefix} {install}')
    body.append(f"cema_hook activation-cache {prefix} {content.kind}")
    # what the commands read beyond activation, as the embedded engine gives it (older locks:
    # CEMA_ENV alone)
    given = " ".join(
        f"{k}={bash_quote(v)}" for k, v in content.commands_env or [("CEMA_ENV", item.env)]
    )
    for command in content.commands:  # install commands, in the activated prefix, in order
        runner = (
            f"(cd {prefix} && {given} VIRTUAL_ENV={prefix} "
            f'PATH={prefix}/bin:"$PATH" /bin/sh -c {bash_quote(command)})'
            if content.kind == "venv"
            else f'(cd {prefix} && {given} "$MAMBA" run --root-prefix'
            f' "$ROOT" --prefix {prefix} /bin/sh -c {bash_quote(command)})'
        )
        body.append(runner)
    body.append(f"cema_receipt {a} {bash_quote(receipt_for(item, created=created).to_json())}")
    # one element per command: a multi-line receipt literal must keep its exact lines
    out += ["  " + line for line in body]
    out += ["fi", "cema_unlock", f"echo {bash_quote(DONE_MARKER + item.env)}", ""]
    return out


def _bash_remove(address: str, was: str | None) -> list[str]:
    return [
        f"# --- remove {address}" + (f" (was {was})" if was else ""),
        f"echo {bash_quote('==> remove ' + address)}",
        f"cema_lock {address}",
        f'rm -f "$STORE/envs/{address}/{RECEIPT_NAME}"  # first: never half gone yet ready',
        f'rm -rf "$STORE/envs/{address}"',
        "cema_unlock",
        "",
    ]


def _render_bash(body: list[str], *, store_root: str, variables: Mapping[str, str]) -> str:
    head = [
        "#!/usr/bin/env bash",
        "# Written by `cema plan --script bash`: builds this plan's prefixes with micromamba from",
        "# the lock's exact URLs and hashes (no solving). Each prefix is built in place under its",
        "# lock and gets its receipt last; a prefix without one is unfinished and is rebuilt.",
        "# Environment: CEMA_MICROMAMBA (default: micromamba on PATH), CEMA_UV (default: uv).",
    ]
    for name, what in variables.items():
        head.append(f"#   {name}: {what} (never written into this script)")
    text = "\n".join(head) + "\n" + _BASH_HEAD.replace("__ROOT__", MICROMAMBA_ROOT)
    text = text.replace("__RECEIPT__", RECEIPT_NAME)
    checks = [f': "${{{name}:?set {name} to {what}}}"' for name, what in variables.items()]
    store = f"STORE={bash_quote(store_root)}"
    text = text.replace("set -euo pipefail\n", f"set -euo pipefail\n\n{store}\n", 1)
    checked = "\n".join(checks) + "\n" if checks else ""
    return text + checked + "\n" + "\n".join(body) + "echo 'cema: done'\n"
