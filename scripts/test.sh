#!/usr/bin/env bash
# Runs every check and test of tenant-egress on a fresh machine (the README's test command;
# .ci/run calls exactly this).
#
#   1. set-up (idempotent): wasm targets, the pinned Envoy in .venv, the filter's .wasm
#   2. formatting and lints: cargo fmt --check; clippy native (all targets) and the filter for
#      wasm32-wasip1, warnings denied
#   3. the policy core and the CLI build for wasm32-wasip1 (the core runs inside the filter)
#   4. cargo test --workspace: unit tests, request vectors, CLI, manifests, and the integration
#      tests that run the built .wasm in a real Envoy (including a TENANT_EGRESS_SOAK_SECS soak,
#      default 60)
#   5. the core's tests compiled to wasm32-unknown-unknown under Node
#   6. the module as a Wasm OCI image pushed to and pulled from a registry on 127.0.0.1
#   7. the docker-compose demo in containers under a real Docker engine (its own dockerd, a
#      locally built Envoy image; nothing left behind)
#   8. a short fuzz run of every target (FUZZ_SECONDS per target, default 20; scripts/fuzz.sh
#      600 for a long one)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

log "set-up"
scripts/setup.sh

log "cargo fmt --check"
cargo fmt --all -- --check

log "clippy (native, all targets)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "clippy (filter, wasm32-wasip1)"
cargo clippy -p tenant-egress-filter --target wasm32-wasip1 --locked -- -D warnings

log "the policy core and the CLI build for wasm32-wasip1"
cargo build -p tenant-egress-core --target wasm32-wasip1 --locked
cargo build -p tenant-egress-config --bin tenant-egress --target wasm32-wasip1 --locked

log "cargo test --workspace"
cargo test --workspace --locked

log "the 100,000-rule policy: every generated object fits (release build)"
cargo test --release --locked -p tenant-egress-bench --test object_sizes -- --ignored

log "the policy core in wasm32-unknown-unknown under Node (wasm-bindgen-test)"
scripts/test-wasm.sh

log "the module as a Wasm OCI image: push to a local registry, pull back, digests agree (istio/wasm-image/build.sh test)"
istio/wasm-image/build.sh test

log "the compose demo under a real Docker engine (scripts/docker-demo.sh test)"
scripts/docker-demo.sh test

log "fuzzing: ${FUZZ_SECONDS:-20} s per target, from the committed seeds"
scripts/fuzz.sh "${FUZZ_SECONDS:-20}"

log "all checks passed in $((SECONDS - started)) s"
