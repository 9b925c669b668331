# Written by `cema plan --script powershell`: builds this plan's prefixes with micromamba
# from the lock's exact URLs and hashes (no solving). Each prefix is built in place under
# its lock and gets its receipt last; a prefix without one is unfinished and is rebuilt.
# Environment: CEMA_MICROMAMBA (default: micromamba on PATH), CEMA_UV (default: uv).
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Store = 'C:\fake\cema store'

$Mamba = if ($env:CEMA_MICROMAMBA) { $env:CEMA_MICROMAMBA } else { 'micromamba' }
$Uv = if ($env:CEMA_UV) { $env:CEMA_UV } else { 'uv' }
$Root = "$Store\micromamba"
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
  $receipt = "$Store\envs\$Address\.cema-receipt.json"
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
  $receipt = "$Store\envs\$Address\.cema-receipt.json"
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

try {
  # --- update demo (conda, linux-64): 3 conda, 0 pip package(s)
  Write-Output '==> update demo'
  $Lock = Lock-CemaPrefix 'a1a1a1a1a1a1a1a1a1a1a1a1'
  try {
    if (Test-CemaReady 'a1a1a1a1a1a1a1a1a1a1a1a1') {
      Write-Output "cema: $Store\envs\a1a1a1a1a1a1a1a1a1a1a1a1 was built by another sync meanwhile"
    } else {
      Clear-CemaPrefix 'a1a1a1a1a1a1a1a1a1a1a1a1'
      $Building = "$Store\envs\a1a1a1a1a1a1a1a1a1a1a1a1"
      [System.IO.File]::WriteAllLines("$Work\a1a1a1a1a1a1a1a1a1a1a1a1.explicit.txt", [string[]]@(
        '# platform: linux-64',
        '@EXPLICIT',
        'https://conda.anaconda.org/conda-forge/linux-64/python-3.11.9-0.conda#sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
        'https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3-0.conda#sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
        'https://conda.anaconda.org/conda-forge/noarch/demo-1.0-0.conda#sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'
      ))
      & $Mamba create --yes --root-prefix $Root --prefix "$Store\envs\a1a1a1a1a1a1a1a1a1a1a1a1" --file "$Work\a1a1a1a1a1a1a1a1a1a1a1a1.explicit.txt"
      Assert-CemaExit 'micromamba create for demo'
      Invoke-CemaHook "$Store\envs\a1a1a1a1a1a1a1a1a1a1a1a1" 'conda'
      Write-CemaReceipt 'a1a1a1a1a1a1a1a1a1a1a1a1' '{
 "address": "a1a1a1a1a1a1a1a1a1a1a1a1",
 "builds": {
  "demo": "0",
  "python": "0",
  "zlib": "0"
 },
 "conda": [
  [
   "demo",
   "1.0"
  ],
  [
   "python",
   "3.11.9"
  ],
  [
   "zlib",
   "1.3"
  ]
 ],
 "created": 1700000000.0,
 "digest": "sha256:2b979b98c3b0d42e885583b211d518608591b8c2efec52d7c9925f45e82fa315",
 "engine": "micromamba",
 "kind": "conda",
 "pip": [],
 "platform": "linux-64",
 "python": "3.11.9",
 "receipt": 1
}'
      $Building = $null
    }
  } finally { $Lock.Dispose(); $Lock = $null }
  Write-Output '==> ready demo'

  # --- reuse other: c3c3c3c3c3c3c3c3c3c3c3c3 is up to date

  # --- update tools: reuse b2b2b2b2b2b2b2b2b2b2b2b2, already in the store

  # --- remove d4d4d4d4d4d4d4d4d4d4d4d4 (was demo)
  Write-Output '==> remove d4d4d4d4d4d4d4d4d4d4d4d4'
  $Lock = Lock-CemaPrefix 'd4d4d4d4d4d4d4d4d4d4d4d4'
  try {
    Remove-Item -LiteralPath "$Store\envs\d4d4d4d4d4d4d4d4d4d4d4d4\.cema-receipt.json" -Force -ErrorAction SilentlyContinue
    if (Test-Path -LiteralPath "$Store\envs\d4d4d4d4d4d4d4d4d4d4d4d4") {
      Remove-Item -LiteralPath "$Store\envs\d4d4d4d4d4d4d4d4d4d4d4d4" -Recurse -Force
    }
  } finally { $Lock.Dispose(); $Lock = $null }

  Write-Output 'cema: done'
} finally {
  # on any failure: drop the unfinished prefix (it has no receipt) and the temp files
  if ($Lock) { $Lock.Dispose() }
  if ($Building -and (Test-Path -LiteralPath $Building)) {
    Remove-Item -LiteralPath $Building -Recurse -Force
  }
  Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue
}
