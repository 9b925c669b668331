#!/usr/bin/env bash
# Written by `cema plan --script bash`: builds this plan's prefixes with micromamba from
# the lock's exact URLs and hashes (no solving). Each prefix is built in place under its
# lock and gets its receipt last; a prefix without one is unfinished and is rebuilt.
# Environment: CEMA_MICROMAMBA (default: micromamba on PATH), CEMA_UV (default: uv).
set -euo pipefail

STORE='/fake/cema store'

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

# --- update demo (conda, linux-64): 3 conda, 0 pip package(s)
echo '==> update demo'
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
    'https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3-0.conda#sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef' \
    'https://conda.anaconda.org/conda-forge/noarch/demo-1.0-0.conda#sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef' \
    >"$WORK/a1a1a1a1a1a1a1a1a1a1a1a1.explicit.txt"
  "$MAMBA" create --yes --root-prefix "$ROOT" --prefix "$STORE/envs/a1a1a1a1a1a1a1a1a1a1a1a1" --file "$WORK/a1a1a1a1a1a1a1a1a1a1a1a1.explicit.txt"
  cema_hook activation-cache "$STORE/envs/a1a1a1a1a1a1a1a1a1a1a1a1" conda
  cema_receipt a1a1a1a1a1a1a1a1a1a1a1a1 '{
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
fi
cema_unlock
echo '==> ready demo'

# --- reuse other: c3c3c3c3c3c3c3c3c3c3c3c3 is up to date

# --- update tools: reuse b2b2b2b2b2b2b2b2b2b2b2b2, already in the store

# --- remove d4d4d4d4d4d4d4d4d4d4d4d4 (was demo)
echo '==> remove d4d4d4d4d4d4d4d4d4d4d4d4'
cema_lock d4d4d4d4d4d4d4d4d4d4d4d4
rm -f "$STORE/envs/d4d4d4d4d4d4d4d4d4d4d4d4/.cema-receipt.json"  # first: never half gone yet ready
rm -rf "$STORE/envs/d4d4d4d4d4d4d4d4d4d4d4d4"
cema_unlock
echo 'cema: done'
