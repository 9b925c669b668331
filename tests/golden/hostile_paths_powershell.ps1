# Written by `cema plan --script powershell`: builds this plan's prefixes with micromamba
# from the lock's exact URLs and hashes (no solving). Each prefix is built in place under
# its lock and gets its receipt last; a prefix without one is unfinished and is rebuilt.
# Environment: CEMA_MICROMAMBA (default: micromamba on PATH), CEMA_UV (default: uv).
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Store = 'C:\fake\it''s a "store" (v2) $env:HOME `id` ’’q’’'

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
  # --- create demo (conda, linux-64): 1 conda, 1 pip package(s)
  Write-Output '==> create demo'
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
        'https://conda.anaconda.org/conda-forge/linux-64/python-3.11.9-0.conda#sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'
      ))
      & $Mamba create --yes --root-prefix $Root --prefix "$Store\envs\a1a1a1a1a1a1a1a1a1a1a1a1" --file "$Work\a1a1a1a1a1a1a1a1a1a1a1a1.explicit.txt"
      Assert-CemaExit 'micromamba create for demo'
      [System.IO.File]::WriteAllLines("$Work\a1a1a1a1a1a1a1a1a1a1a1a1.pip.txt", [string[]]@(
        'six @ https://files.pythonhosted.org/packages/d9/5a/six-1.16.0-py2.py3-none-any.whl --hash=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'
      ))
      & $Mamba run --root-prefix $Root --prefix "$Store\envs\a1a1a1a1a1a1a1a1a1a1a1a1" $Uv pip install --no-progress --no-deps --require-hashes --python "$Store\envs\a1a1a1a1a1a1a1a1a1a1a1a1\bin\python" -r "$Work\a1a1a1a1a1a1a1a1a1a1a1a1.pip.txt"
      Assert-CemaExit 'the pip layer of demo'
      Invoke-CemaHook "$Store\envs\a1a1a1a1a1a1a1a1a1a1a1a1" 'conda'
      Write-CemaReceipt 'a1a1a1a1a1a1a1a1a1a1a1a1' '{
 "address": "a1a1a1a1a1a1a1a1a1a1a1a1",
 "builds": {
  "python": "0"
 },
 "conda": [
  [
   "python",
   "3.11.9"
  ]
 ],
 "created": 1700000000.0,
 "digest": "sha256:9c9759861c34088350f24f89c06d837331a7b8fb4a0a198dbe54ef28adeee476",
 "engine": "micromamba",
 "kind": "conda",
 "pip": [
  [
   "six",
   "1.16.0"
  ]
 ],
 "platform": "linux-64",
 "python": "3.11.9",
 "receipt": 1
}'
      $Building = $null
    }
  } finally { $Lock.Dispose(); $Lock = $null }
  Write-Output '==> ready demo'

  # --- create tools (venv, linux-64): 0 conda, 1 pip package(s)
  Write-Output '==> create tools'
  $Lock = Lock-CemaPrefix 'b2b2b2b2b2b2b2b2b2b2b2b2'
  try {
    if (Test-CemaReady 'b2b2b2b2b2b2b2b2b2b2b2b2') {
      Write-Output "cema: $Store\envs\b2b2b2b2b2b2b2b2b2b2b2b2 was built by another sync meanwhile"
    } else {
      Clear-CemaPrefix 'b2b2b2b2b2b2b2b2b2b2b2b2'
      $Building = "$Store\envs\b2b2b2b2b2b2b2b2b2b2b2b2"
      $env:UV_PYTHON_DOWNLOADS = 'never'
      $env:VIRTUAL_ENV = ''
      & $Uv venv --relocatable --python '/opt/my pythons/it''s "3.11"/bin/python3' "$Store\envs\b2b2b2b2b2b2b2b2b2b2b2b2"
      Assert-CemaExit 'uv venv for tools'
      Remove-Item Env:UV_PYTHON_DOWNLOADS, Env:VIRTUAL_ENV -ErrorAction SilentlyContinue
      [System.IO.File]::WriteAllLines("$Work\b2b2b2b2b2b2b2b2b2b2b2b2.pip.txt", [string[]]@(
        'six @ https://files.pythonhosted.org/packages/d9/5a/six-1.16.0-py2.py3-none-any.whl --hash=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'
      ))
      $env:VIRTUAL_ENV = "$Store\envs\b2b2b2b2b2b2b2b2b2b2b2b2"
      & $Uv pip install --no-progress --no-deps --require-hashes --python "$Store\envs\b2b2b2b2b2b2b2b2b2b2b2b2\bin\python" -r "$Work\b2b2b2b2b2b2b2b2b2b2b2b2.pip.txt"
      Assert-CemaExit 'the pip layer of tools'
      Remove-Item Env:VIRTUAL_ENV -ErrorAction SilentlyContinue
      Invoke-CemaHook "$Store\envs\b2b2b2b2b2b2b2b2b2b2b2b2" 'venv'
      Write-CemaReceipt 'b2b2b2b2b2b2b2b2b2b2b2b2' '{
 "address": "b2b2b2b2b2b2b2b2b2b2b2b2",
 "builds": {},
 "conda": [],
 "created": 1700000000.0,
 "digest": "sha256:7d7a33b1c1dabde155f5caf53978a3492a9d84f0566ffc37f19f2d6956152e1a",
 "engine": "micromamba",
 "kind": "venv",
 "pip": [
  [
   "six",
   "1.16.0"
  ]
 ],
 "platform": "linux-64",
 "python": "3.11.9",
 "receipt": 1
}'
      $Building = $null
    }
  } finally { $Lock.Dispose(); $Lock = $null }
  Write-Output '==> ready tools'

  # --- remove d4d4d4d4d4d4d4d4d4d4d4d4
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
