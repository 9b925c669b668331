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

# --- remove d4d4d4d4d4d4d4d4d4d4d4d4 (was demo)
echo '==> remove d4d4d4d4d4d4d4d4d4d4d4d4'
cema_lock d4d4d4d4d4d4d4d4d4d4d4d4
rm -f "$STORE/envs/d4d4d4d4d4d4d4d4d4d4d4d4/.cema-receipt.json"  # first: never half gone yet ready
rm -rf "$STORE/envs/d4d4d4d4d4d4d4d4d4d4d4d4"
cema_unlock

# --- remove c3c3c3c3c3c3c3c3c3c3c3c3
echo '==> remove c3c3c3c3c3c3c3c3c3c3c3c3'
cema_lock c3c3c3c3c3c3c3c3c3c3c3c3
rm -f "$STORE/envs/c3c3c3c3c3c3c3c3c3c3c3c3/.cema-receipt.json"  # first: never half gone yet ready
rm -rf "$STORE/envs/c3c3c3c3c3c3c3c3c3c3c3c3"
cema_unlock
echo 'cema: done'
