"""Render a plan as a standalone bash or PowerShell script that builds it with micromamba."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from cema.lock import CondaRecord, LockedPlatform, PipRecord
from cema.plan import Create, Plan, Remove, Reuse, Update
from cema.store import RECEIPT_NAME, Receipt

Shell = Literal["bash", "powershell"]
SHELLS: tuple[Shell, ...] = ("bash", "powershell")
ENGINE_NAME = "micromamba"
#: micromamba keeps its own package cache here: its cache layout is not rattler's
MICROMAMBA_ROOT = "micromamba"
#: the line the script prints when an env is ready (the engine counts progress with it)
DONE_MARKER = "==> ready "

# --- what the renderer needs of a resolved env (apply.Resolved fits) -----------------------


class InterpreterLike(Protocol):
    """A venv's base interpreter."""

    @property
    def path(self) -> Path:
        """Its executable."""
        ...

    @property
    def version(self) -> str:
        """Its version, ``3.11.9``."""
        ...


class ResolvedEnv(Protocol):
    """One env's locked content on this machine and its prefix address."""

    @property
    def env(self) -> str:
        """The env's name."""
        ...

    @property
    def address(self) -> str:
        """Its prefix address in the store."""
        ...

    @property
    def content(self) -> LockedPlatform:
        """Its locked content for this platform."""
        ...

    @property
    def interpreter(self) -> InterpreterLike | None:
        """The base interpreter of a venv (None for conda envs)."""
        ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Script:
    """A rendered script and the secrets its environment must provide when it runs."""

    shell: Shell
    text: str
    #: environment variable → value; never written into ``text``
    secrets: Mapping[str, str] = field(default_factory=dict)
    #: environment variable → what it must hold (for the header and the error message)
    variables: Mapping[str, str] = field(default_factory=dict)


# --- secrets: credentials in URLs become environment variables -----------------------------


@dataclass(frozen=True, slots=True)
class _Var:
    """A reference to an environment variable inside a rendered word."""

    name: str


_Part = str | _Var
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<secret>[^/@\s]+)@", re.IGNORECASE)
_TOKEN = re.compile(r"/t/(?P<secret>[^/\s]+)/")


class _Secrets:
    """Assigns one environment variable per distinct credential found in URLs."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.descriptions: dict[str, str] = {}
        self._by_secret: dict[tuple[str, str], str] = {}

    def _var(self, kind: str, secret: str, where: str) -> _Var:
        key = (kind, secret)
        if key not in self._by_secret:
            count = sum(1 for k in self._by_secret if k[0] == kind) + 1
            name = f"CEMA_CHANNEL_{kind}_{count}"
            self._by_secret[key] = name
            self.values[name] = secret
            what = "user:password" if kind == "AUTH" else "token"
            self.descriptions[name] = f"the {what} for {where}"
        return _Var(self._by_secret[key])

    def split(self, text: str) -> list[_Part]:
        """``text`` as literal parts and variable references (no credential stays literal)."""
        parts: list[_Part] = []
        rest = text
        while True:
            found = [m for m in (_USERINFO.search(rest), _TOKEN.search(rest)) if m is not None]
            if not found:
                break
            match = min(found, key=lambda m: m.start())
            at = len(text) - len(rest) + match.start()
            url = text[text.rfind(" ", 0, at) + 1 :]  # the whole URL, for its description
            if match.re is _USERINFO:
                var = self._var("AUTH", match["secret"], _where(url))
                parts += [rest[: match.start()] + match["scheme"], var, "@"]
            else:
                var = self._var("TOKEN", match["secret"], _where(url))
                parts += [rest[: match.start()] + "/t/", var, "/"]
            rest = rest[match.end() :]
        parts.append(rest)
        merged: list[_Part] = []
        for part in parts:
            if isinstance(part, str) and merged and isinstance(merged[-1], str):
                merged[-1] += part
            elif part != "":
                merged.append(part)
        return merged


def _where(url: str) -> str:
    """``scheme://host`` of ``url``, in plain characters (it lands in comments and messages)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return re.sub(r"[^A-Za-z0-9:/._-]", "?", f"{scheme}://{host}" if rest else scheme)


# --- quoting -----------------------------------------------------------------------------


def bash_quote(text: str) -> str:
    """``text`` as one bash word, taken literally (single quotes; ``'`` as ``'\\''``)."""
    return "'" + text.replace("'", "'\\''") + "'"


#: PowerShell treats the typographic single quotes as quotes too: double every one of them
_PS_QUOTES = re.compile("['\u2018\u2019\u201a\u201b]")


def powershell_quote(text: str) -> str:
    """``text`` as a literal PowerShell string (single quotes, each quote character doubled)."""
    return "'" + _PS_QUOTES.sub(lambda m: m.group(0) * 2, text) + "'"


def _bash_word(parts: Sequence[_Part]) -> str:
    return "".join(f'"${{{p.name}}}"' if isinstance(p, _Var) else bash_quote(p) for p in parts)


def _ps_word(parts: Sequence[_Part]) -> str:
    rendered = [f"$env:{p.name}" if isinstance(p, _Var) else powershell_quote(p) for p in parts]
    return rendered[0] if len(rendered) == 1 else "(" + " + ".join(rendered) + ")"


# --- content ------------------------------------------------------------------------------


def _dep_name(spec: str) -> str:
    return re.split(r"[\s=<>!~\[]", spec.strip(), maxsplit=1)[0]


def install_order(records: Iterable[CondaRecord]) -> list[CondaRecord]:
    """Records with dependencies first (by name, ties alphabetical): link scripts need them."""
    by_name = {r.name: r for r in records}
    deps = {
        n: {d for d in map(_dep_name, r.depends) if d in by_name and d != n}
        for n, r in by_name.items()
    }
    out: list[CondaRecord] = []
    done: set[str] = set()
    while len(done) < len(by_name):
        ready = sorted(n for n in by_name if n not in done and deps[n] <= done)
        if not ready:  # a cycle: take the rest alphabetically
            ready = sorted(n for n in by_name if n not in done)[:1]
        for name in ready:
            done.add(name)
            out.append(by_name[name])
    return out


def explicit_lines(records: Iterable[CondaRecord], *, platform: str) -> list[str]:
    """micromamba's explicit file (credentials left in; the renderer swaps them for variables)."""
    return [
        f"# platform: {platform}",
        "@EXPLICIT",
        *(
            f"{r.url}#sha256:{r.sha256}" if r.sha256 else f"{r.url}#{r.md5}"
            for r in install_order(records)
        ),
    ]


def pip_lines(records: Iterable[PipRecord]) -> list[str]:
    """The hashed requirements file of the pip layer (installed with ``--no-deps``)."""
    return [f"{r.name} @ {r.url} --hash=sha256:{r.sha256}" for r in records]


def receipt_for(item: ResolvedEnv, *, created: float) -> Receipt:
    """The receipt the script writes last (same JSON as the embedded engine's)."""
    content = item.content
    return Receipt(
        address=item.address,
        kind=content.kind,
        platform=content.platform,
        conda=tuple((r.name, r.version) for r in content.conda),
        pip=tuple((r.name, r.version) for r in content.pip),
        python=item.interpreter.version if item.interpreter else content.python_version(),
        engine=ENGINE_NAME,
        created=created,
    )


def _python_in(prefix_rel: str, content: LockedPlatform, sep: str) -> str:
    windows = content.platform.startswith("win")
    if not windows:
        return sep.join([prefix_rel, "bin", "python"])
    if content.kind == "venv":
        return sep.join([prefix_rel, "Scripts", "python.exe"])
    return sep.join([prefix_rel, "python.exe"])


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
            f' --file "$WORK/{a}.explicit.txt"'
        )
    if content.pip:
        body += _bash_lines(
            [secrets.split(line) for line in pip_lines(content.pip)], f'"$WORK/{a}.pip.txt"'
        )
        install = (
            f'"$UV" pip install --no-progress --no-deps --require-hashes --python {python}'
            f' -r "$WORK/{a}.pip.txt"'
        )
        if content.kind == "venv":
            body.append(f"VIRTUAL_ENV={prefix} {install}")
        else:  # in the activated env, as the embedded engine does
            body.append(f'"$MAMBA" run --root-prefix "$ROOT" --prefix {prefix} {install}')
    body.append(f"cema_hook activation-cache {prefix} {content.kind}")
    for command in content.commands:  # install commands, in the activated prefix, in order
        runner = (
            f"(cd {prefix} && CEMA_ENV={bash_quote(item.env)} VIRTUAL_ENV={prefix} "
            f"PATH={prefix}/bin:\"$PATH\" /bin/sh -c {bash_quote(command)})"
            if content.kind == "venv"
            else f"(cd {prefix} && CEMA_ENV={bash_quote(item.env)} \"$MAMBA\" run --root-prefix"
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


# --- PowerShell ---------------------------------------------------------------------------

_PS_HEAD = r"""$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Mamba = if ($env:CEMA_MICROMAMBA) { $env:CEMA_MICROMAMBA } else { 'micromamba' }
$Uv = if ($env:CEMA_UV) { $env:CEMA_UV } else { 'uv' }
$Root = "$Store\__ROOT__"
$Work = Join-Path ([System.IO.Path]::GetTempPath()) ('cema-' + [guid]::NewGuid().ToString('N'))
$Building = $null
$Lock = $null
New-Item -ItemType Directory -Force -Path $Work, "$Store\envs", "$Store\locks" | Out-Null

function Lock-CemaPrefix([string]$Address) {
  # an exclusive handle on the file cema itself locks (filelock cannot open it meanwhile)
  $path = "$Store\locks\$Address.lock"
  while ($true) {
    try { return [System.IO.File]::Open($path, 'OpenOrCreate', 'ReadWrite', 'None') }
    catch [System.IO.IOException] { Start-Sleep -Milliseconds 200 }
  }
}
function Test-CemaReady([string]$Address) {
  $receipt = "$Store\envs\$Address\__RECEIPT__"
  if (-not (Test-Path -LiteralPath $receipt)) { return $false }
  return (Get-Content -LiteralPath $receipt -Raw).Contains('"address": "' + $Address + '"')
}
function Clear-CemaPrefix([string]$Address) {
  $prefix = "$Store\envs\$Address"
  if (Test-Path -LiteralPath $prefix) {
    Write-Output "cema: removing the unfinished prefix $prefix"
    Remove-Item -LiteralPath $prefix -Recurse -Force
  }
}
function Write-CemaReceipt([string]$Address, [string]$Text) {
  $receipt = "$Store\envs\$Address\__RECEIPT__"
  [System.IO.File]::WriteAllText("$receipt.tmp", $Text)
  Move-Item -LiteralPath "$receipt.tmp" -Destination $receipt -Force
}
function Assert-CemaExit([string]$What) {
  if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}
function Invoke-CemaHook([string]$Prefix, [string]$Kind) {
  # set by `cema sync`: cache the activation variables (else computed on first use)
  if ($env:CEMA_HOOK_PYTHON) {
    & $env:CEMA_HOOK_PYTHON -m cema.engines.micromamba activation-cache $Prefix $Kind
    Assert-CemaExit 'caching the activation variables'
  }
}
"""


def _ps_lines(parts_lines: Sequence[Sequence[_Part]], target: str) -> list[str]:
    return [
        f"[System.IO.File]::WriteAllLines({target}, [string[]]@(",
        *(f"  {_ps_word(parts)}," for parts in parts_lines[:-1]),
        *(f"  {_ps_word(parts)}" for parts in parts_lines[-1:]),
        "))",
    ]


def _ps_build(item: ResolvedEnv, *, label: str, secrets: _Secrets, created: float) -> list[str]:
    a = item.address
    content = item.content
    prefix = f'"$Store\\envs\\{a}"'
    python = '"' + _python_in(f"$Store\\envs\\{a}", content, "\\") + '"'
    body: list[str] = [
        f"Clear-CemaPrefix '{a}'",
        f"$Building = {prefix}",
    ]
    if content.kind == "venv":
        assert item.interpreter is not None, "a venv needs its base interpreter"
        body += [
            "$env:UV_PYTHON_DOWNLOADS = 'never'",
            "$env:VIRTUAL_ENV = ''",
            f"& $Uv venv --relocatable --python {powershell_quote(str(item.interpreter.path))}"
            f" {prefix}",
            f"Assert-CemaExit {powershell_quote('uv venv for ' + item.env)}",
            "Remove-Item Env:UV_PYTHON_DOWNLOADS, Env:VIRTUAL_ENV -ErrorAction SilentlyContinue",
        ]
    else:
        lines = explicit_lines(content.conda, platform=content.platform)
        body += _ps_lines([secrets.split(line) for line in lines], f'"$Work\\{a}.explicit.txt"')
        body += [
            f"& $Mamba create --yes --root-prefix $Root --prefix {prefix}"
            f' --file "$Work\\{a}.explicit.txt"',
            f"Assert-CemaExit {powershell_quote('micromamba create for ' + item.env)}",
        ]
    if content.pip:
        body += _ps_lines(
            [secrets.split(line) for line in pip_lines(content.pip)], f'"$Work\\{a}.pip.txt"'
        )
        install = (
            f"$Uv pip install --no-progress --no-deps --require-hashes --python {python}"
            f' -r "$Work\\{a}.pip.txt"'
        )
        if content.kind == "venv":
            body += [f"$env:VIRTUAL_ENV = {prefix}", f"& {install}"]
        else:
            body.append(f"& $Mamba run --root-prefix $Root --prefix {prefix} {install}")
        body.append(f"Assert-CemaExit {powershell_quote('the pip layer of ' + item.env)}")
        if content.kind == "venv":
            body.append("Remove-Item Env:VIRTUAL_ENV -ErrorAction SilentlyContinue")
    for command in content.commands:  # install commands, in the activated prefix, in order
        body += [
            f"Push-Location {prefix}",
            f"$env:CEMA_ENV = {powershell_quote(item.env)}",
            f"& $Mamba run --root-prefix $Root --prefix {prefix} cmd.exe /d /c"
            f" {powershell_quote(command)}",
            f"Assert-CemaExit {powershell_quote('the install command ' + command)}",
            "Pop-Location",
        ]
    body += [
        f"Invoke-CemaHook {prefix} '{content.kind}'",
        f"Write-CemaReceipt '{a}' {powershell_quote(receipt_for(item, created=created).to_json())}",
        "$Building = $null",
    ]
    return [
        f"# --- {label} {item.env} ({content.kind}, {content.platform}):"
        f" {len(content.conda)} conda, {len(content.pip)} pip package(s)",
        f"Write-Output {powershell_quote('==> ' + label + ' ' + item.env)}",
        f"$Lock = Lock-CemaPrefix '{a}'",
        "try {",
        f"  if (Test-CemaReady '{a}') {{",
        f'    Write-Output "cema: $Store\\envs\\{a} was built by another sync meanwhile"',
        "  } else {",
        *("    " + line for line in body),
        "  }",
        "} finally { $Lock.Dispose(); $Lock = $null }",
        f"Write-Output {powershell_quote(DONE_MARKER + item.env)}",
        "",
    ]


def _ps_remove(address: str, was: str | None) -> list[str]:
    prefix = f'"$Store\\envs\\{address}"'
    return [
        f"# --- remove {address}" + (f" (was {was})" if was else ""),
        f"Write-Output {powershell_quote('==> remove ' + address)}",
        f"$Lock = Lock-CemaPrefix '{address}'",
        "try {",
        f'  Remove-Item -LiteralPath "$Store\\envs\\{address}\\{RECEIPT_NAME}" -Force'
        " -ErrorAction SilentlyContinue",
        f"  if (Test-Path -LiteralPath {prefix}) {{",
        f"    Remove-Item -LiteralPath {prefix} -Recurse -Force",
        "  }",
        "} finally { $Lock.Dispose(); $Lock = $null }",
        "",
    ]


def _render_powershell(body: list[str], *, store_root: str, variables: Mapping[str, str]) -> str:
    head = [
        "# Written by `cema plan --script powershell`: builds this plan's prefixes with micromamba",
        "# from the lock's exact URLs and hashes (no solving). Each prefix is built in place under",
        "# its lock and gets its receipt last; a prefix without one is unfinished and is rebuilt.",
        "# Environment: CEMA_MICROMAMBA (default: micromamba on PATH), CEMA_UV (default: uv).",
    ]
    for name, what in variables.items():
        head.append(f"#   {name}: {what} (never written into this script)")
    checks = [
        f"if (-not $env:{name}) {{ throw {powershell_quote(f'set {name} to {what}')} }}"
        for name, what in variables.items()
    ]
    text = "\n".join(head) + "\n" + _PS_HEAD.replace("__ROOT__", MICROMAMBA_ROOT)
    text = text.replace("__RECEIPT__", RECEIPT_NAME)
    text = text.replace(
        "Set-StrictMode -Version Latest\n",
        f"Set-StrictMode -Version Latest\n\n$Store = {powershell_quote(store_root)}\n",
        1,
    )
    main = [
        *checks,
        "try {",
        *("  " + line if line else "" for line in body),
        "  Write-Output 'cema: done'",
        "} finally {",
        "  # on any failure: drop the unfinished prefix (it has no receipt) and the temp files",
        "  if ($Lock) { $Lock.Dispose() }",
        "  if ($Building -and (Test-Path -LiteralPath $Building)) {",
        "    Remove-Item -LiteralPath $Building -Recurse -Force",
        "  }",
        "  Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue",
        "}",
    ]
    return text + "\n" + "\n".join(main) + "\n"


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
