#!/usr/bin/env bash
# Written by `cema plan --script bash`: builds this plan's prefixes with micromamba from
# the lock's exact URLs and hashes (no solving). Each prefix is built in place under its
# lock and gets its receipt last; a prefix without one is unfinished and is rebuilt.
# Environment: CEMA_MICROMAMBA (default: micromamba on PATH), CEMA_UV (default: uv).
set -euo pipefail

STORE='/fake/it'\''s a "store" (v2) $HOME `id` \ ~'

MAMBA="${CEMA_MICROMAMBA:-micromamba}"
UV="${CEMA_UV:-uv}"
ROOT="$STORE/micromamba"
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
  grep -qs "\"address\": \"$1\"" "$STORE/envs/$1/.cema-receipt.json"
}
cema_clear() {  # remove what an interrupted build of $1 left (we hold its lock)
  if [ -e "$STORE/envs/$1" ]; then
    echo "cema: removing the unfinished prefix $STORE/envs/$1"
    rm -rf "$STORE/envs/$1"
  fi
}
cema_receipt() {  # the last step of a build: the receipt, written atomically
  printf '%s' "$2" >"$STORE/envs/$1/.cema-receipt.json.tmp"
  mv -f "$STORE/envs/$1/.cema-receipt.json.tmp" "$STORE/envs/$1/.cema-receipt.json"
  BUILDING=""
}
cema_hook() {  # set by `cema sync`: cache the activation variables (else computed on first use)
  if [ -n "${CEMA_HOOK_PYTHON:-}" ]; then "$CEMA_HOOK_PYTHON" -m cema.engines.micromamba "$@"; fi
}

# --- create demo (conda, linux-64): 1 conda, 1 pip package(s)
echo '==> create demo'
cema_lock a1a1a1a1a1a1a1a1a1a1a1a1
if cema_ready a1a1a1a1a1a1a1a1a1a1a1a1; then
  echo "cema: $STORE/envs/a1a1a1a1a1a1a1a1a1a1a1a1 was built by another sync meanwhile"
else
  cema_clear a1a1a1a1a1a1a1a1a1a1a1a1
  BUILDING="$STORE/envs/a1a1a1a1a1a1a1a1a1a1a1a1"
  printf '%s\n' \
    '# platform: linux-64' \
    '@EXPLICIT' \
    'https://conda.anaconda.org/conda-forge/linux-64/python-3.11.9-0.conda#sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef' \
    >"$WORK/a1a1a1a1a1a1a1a1a1a1a1a1.explicit.txt"
  "$MAMBA" create --yes --root-prefix "$ROOT" --prefix "$STORE/envs/a1a1a1a1a1a1a1a1a1a1a1a1" --file "$WORK/a1a1a1a1a1a1a1a1a1a1a1a1.explicit.txt"
  printf '%s\n' \
    'six @ https://files.pythonhosted.org/packages/d9/5a/six-1.16.0-py2.py3-none-any.whl --hash=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef' \
    >"$WORK/a1a1a1a1a1a1a1a1a1a1a1a1.pip.txt"
  "$MAMBA" run --root-prefix "$ROOT" --prefix "$STORE/envs/a1a1a1a1a1a1a1a1a1a1a1a1" "$UV" pip install --no-progress --no-deps --require-hashes --python "$STORE/envs/a1a1a1a1a1a1a1a1a1a1a1a1/bin/python" -r "$WORK/a1a1a1a1a1a1a1a1a1a1a1a1.pip.txt"
  cema_hook activation-cache "$STORE/envs/a1a1a1a1a1a1a1a1a1a1a1a1" conda
  cema_receipt a1a1a1a1a1a1a1a1a1a1a1a1 '{
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
fi
cema_unlock
echo '==> ready demo'

# --- create tools (venv, linux-64): 0 conda, 1 pip package(s)
echo '==> create tools'
cema_lock b2b2b2b2b2b2b2b2b2b2b2b2
if cema_ready b2b2b2b2b2b2b2b2b2b2b2b2; then
  echo "cema: $STORE/envs/b2b2b2b2b2b2b2b2b2b2b2b2 was built by another sync meanwhile"
else
  cema_clear b2b2b2b2b2b2b2b2b2b2b2b2
  BUILDING="$STORE/envs/b2b2b2b2b2b2b2b2b2b2b2b2"
  UV_PYTHON_DOWNLOADS=never VIRTUAL_ENV="" "$UV" venv --relocatable --python '/opt/my pythons/it'\''s "3.11"/bin/python3' "$STORE/envs/b2b2b2b2b2b2b2b2b2b2b2b2"
  printf '%s\n' \
    'six @ https://files.pythonhosted.org/packages/d9/5a/six-1.16.0-py2.py3-none-any.whl --hash=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef' \
    >"$WORK/b2b2b2b2b2b2b2b2b2b2b2b2.pip.txt"
  VIRTUAL_ENV="$STORE/envs/b2b2b2b2b2b2b2b2b2b2b2b2" "$UV" pip install --no-progress --no-deps --require-hashes --python "$STORE/envs/b2b2b2b2b2b2b2b2b2b2b2b2/bin/python" -r "$WORK/b2b2b2b2b2b2b2b2b2b2b2b2.pip.txt"
  cema_hook activation-cache "$STORE/envs/b2b2b2b2b2b2b2b2b2b2b2b2" venv
  cema_receipt b2b2b2b2b2b2b2b2b2b2b2b2 '{
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
fi
cema_unlock
echo '==> ready tools'

# --- remove d4d4d4d4d4d4d4d4d4d4d4d4
echo '==> remove d4d4d4d4d4d4d4d4d4d4d4d4'
cema_lock d4d4d4d4d4d4d4d4d4d4d4d4
rm -f "$STORE/envs/d4d4d4d4d4d4d4d4d4d4d4d4/.cema-receipt.json"  # first: never half gone yet ready
rm -rf "$STORE/envs/d4d4d4d4d4d4d4d4d4d4d4d4"
cema_unlock
echo 'cema: done'
