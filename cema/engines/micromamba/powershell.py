"""Plans as PowerShell scripts (Windows): Stop on errors, exit codes checked, receipts last."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cema.engines.micromamba.common import (
    DONE_MARKER,
    MAMBA_COPY,
    MICROMAMBA_ROOT,
    UV_COPY,
    ResolvedEnv,
    _Part,
    _ps_word,
    _python_in,
    _Secrets,
    explicit_lines,
    pip_lines,
    powershell_quote,
    receipt_for,
)
from cema.store import RECEIPT_NAME

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
    copy = item.link == "copy"
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
            f' --file "$Work\\{a}.explicit.txt"' + (MAMBA_COPY if copy else ""),
            f"Assert-CemaExit {powershell_quote('micromamba create for ' + item.env)}",
        ]
    if content.pip:
        body += _ps_lines(
            [secrets.split(line) for line in pip_lines(content.pip)], f'"$Work\\{a}.pip.txt"'
        )
        install = (
            f"$Uv pip install --no-progress --no-deps --require-hashes --python {python}"
            f' -r "$Work\\{a}.pip.txt"' + (UV_COPY if copy else "")
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
            *(
                f"$env:{k} = {powershell_quote(v)}"
                for k, v in content.commands_env or [("CEMA_ENV", item.env)]
            ),
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
