#!/usr/bin/env bash
# Runs the policy core's own unit tests (`--lib`: the host grammar, the parsers, validation, the
# matcher and the request-vector replay in src/vectors.rs) compiled to wasm32-unknown-unknown,
# under Node with wasm-bindgen-test, so the matcher is proven identical where it actually runs.
# Each test module imports `wasm_bindgen_test as test` under wasm32, so every `#[test]` of the
# library runs here too; there are no hand-kept copies.
#
#   scripts/test-wasm.sh
#   scripts/test-wasm.sh --install-only   (for scripts/setup.sh: only install the runner)
#
# Installs wasm-bindgen-test-runner (crate wasm-bindgen-cli) at exactly the wasm-bindgen
# version in Cargo.lock into .tools/cargo (about 3 minutes, once; skipped when present at that
# version). Needs Node (>= 18) on PATH and the wasm32-unknown-unknown rustup target
# (scripts/setup.sh adds it). Honours CARGO_TARGET_DIR. Only cargo (crates.io) touches the
# network, and only to install the runner.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '==> test-wasm: %s\n' "$*"; }
die() { printf 'error: test-wasm: %s\n' "$*" >&2; exit 1; }
started=$SECONDS

command -v node >/dev/null 2>&1 || die "node not found on PATH (wasm-bindgen-test runs the tests under Node)"
rustup target list --installed | grep -qx wasm32-unknown-unknown ||
  die "rustup target wasm32-unknown-unknown missing (run scripts/setup.sh)"

# The runner must match the wasm-bindgen the test links, byte for byte of the version.
WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
[[ -n "$WB_VERSION" ]] || die "no wasm-bindgen in Cargo.lock"

TOOLS="$ROOT/.tools/cargo"
export PATH="$TOOLS/bin:$PATH"
have="$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}' || true)"
if [[ "$have" != "$WB_VERSION" ]]; then
  log "installing wasm-bindgen-cli ${WB_VERSION} (matches Cargo.lock) into .tools/cargo (about 3 minutes, once)"
  # A private target dir, so a CARGO_TARGET_DIR of the caller is not filled with its build.
  # --locked first (the dependency versions wasm-bindgen-cli was released with); a locked
  # dependency that was since yanked (seen: webpki-roots 1.0.11 for 0.2.130) makes that fail,
  # and then the newest compatible dependencies are used.
  if ! CARGO_TARGET_DIR="$ROOT/.tools/cargo-build" \
    cargo install wasm-bindgen-cli --version "$WB_VERSION" --locked --root "$TOOLS"; then
    log "--locked install failed; retrying with the newest compatible dependencies"
    CARGO_TARGET_DIR="$ROOT/.tools/cargo-build" \
      cargo install wasm-bindgen-cli --version "$WB_VERSION" --root "$TOOLS"
  fi
  rm -rf "$ROOT/.tools/cargo-build"
fi
log "$(wasm-bindgen-test-runner --version), node $(node --version)"
[[ "${1:-}" != "--install-only" ]] || exit 0

export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
# Node mode (no run_in_browser); generous per-test timeout for a loaded CI machine.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-120}"
log "cargo test -p tenant-egress-core --target wasm32-unknown-unknown --lib -- --nocapture"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
set +e
cargo test -p tenant-egress-core --target wasm32-unknown-unknown \
  --lib --locked -- --nocapture 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
((status == 0)) || die "wasm tests failed (exit $status)"
# A runner that silently ran nothing must not pass: the vector replay logs its count, and the
# runner's summary must show tests that passed.
grep -qE 'wasm32: [0-9]+ request vectors over [0-9]+ policies, 0 failed' "$out" ||
  die "the request vectors did not run under wasm (no count line in the output)"
grep -qE 'wasm32: [0-9]+ inbound vectors over [0-9]+ policies, 0 failed' "$out" ||
  die "the inbound vectors did not run under wasm (no count line in the output)"
grep -qE 'test result: ok\. [1-9][0-9]* passed' "$out" ||
  die "no test passed under wasm (no 'test result: ok. N passed' line)"
log "passed in $((SECONDS - started)) s"
