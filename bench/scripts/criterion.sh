#!/usr/bin/env bash
# The native suite in one command: the criterion benches (decide, compile/validate, authority),
# then the compiled-policy memory report, written to bench/results/criterion.md and printed.
#
#   bench/scripts/criterion.sh                      # full run (about 5 minutes)
#   bench/scripts/criterion.sh --warm-up-time 1 --measurement-time 2   # quicker
#   bench/scripts/criterion.sh decide/exact_hit     # a criterion filter
#
# Arguments go to criterion (after `cargo bench -p tenant-egress-bench --`). Honours
# CARGO_TARGET_DIR (criterion keeps its history under <target>/criterion).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
export CARGO_TARGET_DIR="$TARGET_DIR"

started="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_start="$(cut -d' ' -f1 /proc/loadavg)"
cargo bench -p tenant-egress-bench -- "$@"
mem="$(mktemp)"
trap 'rm -f "$mem"' EXIT
cargo run -q --release -p tenant-egress-bench --bin policy-memory -- --markdown >"$mem"
load_end="$(cut -d' ' -f1 /proc/loadavg)"

mkdir -p bench/results
{
  echo "# Native benchmarks (criterion)"
  echo
  echo "$started · commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`$(git status --porcelain -- config 2>/dev/null | grep -q . && echo ' (config/ has uncommitted changes)') · $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs · rustc $(rustc --version | cut -d' ' -f2) · load average ${load_start} at start, ${load_end} at end"
  echo
  python3 bench/scripts/criterion-report.py "$TARGET_DIR" "$mem"
} >bench/results/criterion.md
echo
cat bench/results/criterion.md
