#!/usr/bin/env bash
# Fuzzes the policy core with cargo-fuzz (libFuzzer): targets policy, authority, cluster, decide, inbound
# (fuzz/README.md lists the invariants each asserts).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   scripts/fuzz.sh --install-only      (for scripts/setup.sh: only install cargo-fuzz)
#
#   SECONDS   time per target (default 20: the short run of scripts/test.sh);
#             `scripts/fuzz.sh 600` is the documented longer run (10 minutes per target)
#   TARGET    a subset of: policy authority cluster decide (default: all)
#
# Steps: install the pinned cargo-fuzz into .tools/cargo if missing; build every target once;
# run the invariants over the committed seeds as ordinary unit tests (fuzz/tests/replay.rs); run
# each target for SECONDS from the committed seeds (fuzz/corpus/<target>/, read only; libFuzzer
# runs every seed first) plus a working corpus that grows across runs on this machine
# (<target dir>/fuzz/corpus/<target>/). Exits non-zero on any crash or failed invariant; the
# input is saved under fuzz/artifacts/<target>/ and the script prints how to reproduce it. A
# crash is kept as a committed seed, fuzz/corpus/<target>/crash-<what-it-broke>, which both the
# unit tests and every later run replay.
#
# Environment:
#   FUZZ_TOOLCHAIN   rustup toolchain for the build (default: nightly when installed, else the
#                    one pinned in rust-toolchain.toml; with sanitizer "none" both work)
#   FUZZ_SANITIZER   none (default: the core is #![forbid(unsafe_code)]) or address (nightly)
#   FUZZ_JOBS        libFuzzer processes per target (default 1; 2 cores are shared)
#   CARGO_TARGET_DIR where to build (the fuzz build goes to $CARGO_TARGET_DIR/fuzz)
#
# Only cargo (crates.io) touches the network, and only on the first run (cargo-fuzz, crates).
set -euo pipefail

CARGO_FUZZ_VERSION="0.13.2"
ALL_TARGETS=(policy authority cluster decide inbound)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '==> fuzz: %s\n' "$*"; }
die() { printf 'error: fuzz: %s\n' "$*" >&2; exit 1; }
started=$SECONDS

install_only=0
if [[ "${1:-}" == "--install-only" ]]; then install_only=1; shift; fi
secs="${1:-20}"
[[ "$secs" =~ ^[0-9]+$ && "$secs" -ge 1 ]] || die "SECONDS must be a positive integer, got '$secs'"
shift || true
targets=("$@")
((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || die "unknown target '$t' (one of: ${ALL_TARGETS[*]})"
done

# --- cargo-fuzz, pinned, project-local ----------------------------------------------------
TOOLS="$ROOT/.tools/cargo"
export PATH="$TOOLS/bin:$PATH"
have="$(cargo-fuzz --version 2>/dev/null | awk '{print $2}' || true)"
if [[ "$have" != "$CARGO_FUZZ_VERSION" ]]; then
  log "installing cargo-fuzz ${CARGO_FUZZ_VERSION} into .tools/cargo (about 2 minutes, once)"
  # A private target dir, so a CARGO_TARGET_DIR of the caller is not filled with its build.
  CARGO_TARGET_DIR="$ROOT/.tools/cargo-build" \
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$TOOLS"
  rm -rf "$ROOT/.tools/cargo-build"
fi
log "$(cargo-fuzz --version)"
((install_only == 0)) || exit 0

# --- toolchain and sanitizer ---------------------------------------------------------------
SANITIZER="${FUZZ_SANITIZER:-none}"
if [[ -n "${FUZZ_TOOLCHAIN:-}" ]]; then
  TOOLCHAIN="$FUZZ_TOOLCHAIN"
elif rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  TOOLCHAIN="nightly"
else
  TOOLCHAIN="$(rustup show active-toolchain | awk '{print $1}')"
fi
if [[ "$SANITIZER" != "none" && "$TOOLCHAIN" != nightly* ]]; then
  die "sanitizer '$SANITIZER' needs a nightly toolchain (FUZZ_TOOLCHAIN=nightly); '$TOOLCHAIN' is not"
fi
log "toolchain ${TOOLCHAIN} ($(rustup run "$TOOLCHAIN" rustc --version)), sanitizer ${SANITIZER}"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
FUZZ_TARGET_DIR="$TARGET_DIR/fuzz"
# The sanitizer changes every object file: keep the builds apart.
[[ "$SANITIZER" == "none" ]] || FUZZ_TARGET_DIR="$TARGET_DIR/fuzz-$SANITIZER"

# --- build ---------------------------------------------------------------------------------
t0=$SECONDS
log "building ${targets[*]} (release, libFuzzer instrumentation) into $FUZZ_TARGET_DIR"
build_args=(+"$TOOLCHAIN" fuzz build --fuzz-dir "$ROOT/fuzz" --target-dir "$FUZZ_TARGET_DIR" -s "$SANITIZER")
if ((${#targets[@]} == ${#ALL_TARGETS[@]})); then
  cargo "${build_args[@]}"
else
  for t in "${targets[@]}"; do cargo "${build_args[@]}" "$t"; done
fi
BIN_DIR="$FUZZ_TARGET_DIR/x86_64-unknown-linux-gnu/release"
log "built in $((SECONDS - t0)) s"

failed=()
report_crash() {
  local t="$1"
  failed+=("$t")
  printf '\nerror: fuzz: target %s FAILED. Crash inputs:\n' "$t" >&2
  ls -1 "$ROOT/fuzz/artifacts/$t/" 2>/dev/null | sed "s|^|  fuzz/artifacts/$t/|" >&2 || true
  cat >&2 <<EOF
  reproduce: $BIN_DIR/$t fuzz/artifacts/$t/<file>
         or: cargo +$TOOLCHAIN fuzz run -s $SANITIZER $t fuzz/artifacts/$t/<file>
  minimize:  cargo +$TOOLCHAIN fuzz tmin -s $SANITIZER $t fuzz/artifacts/$t/<file>
  then keep it: cp <file> fuzz/corpus/$t/crash-<what-it-broke> (replayed by every run and by
  'cargo test' in fuzz/), and turn it into a unit test of the failing invariant.
EOF
}

# --- the same invariants as unit tests ---------------------------------------------------------
# fuzz/tests/replay.rs runs every committed seed (crash cases included) through the checks without
# libFuzzer (ordinary build, the pinned toolchain), and checks the vector seeds are current.
# No --locked: fuzz/Cargo.lock follows the core's dependencies as they change.
log "cargo test (fuzz/): the committed seeds through the invariants, without libFuzzer"
if ! cargo test --manifest-path "$ROOT/fuzz/Cargo.toml" --target-dir "$FUZZ_TARGET_DIR/unit" -q \
  >"$FUZZ_TARGET_DIR/unit-tests.log" 2>&1; then
  cat "$FUZZ_TARGET_DIR/unit-tests.log" >&2
  failed+=("unit tests (fuzz/tests/replay.rs)")
else
  log "$(grep -E '^test result: ok\. [1-9]' "$FUZZ_TARGET_DIR/unit-tests.log" | head -n1)"
fi

# --- fuzz ------------------------------------------------------------------------------------
for t in "${targets[@]}"; do
  work="$FUZZ_TARGET_DIR/corpus/$t"
  artifacts="$ROOT/fuzz/artifacts/$t"
  mkdir -p "$work" "$artifacts"
  args=(
    "$work" "$ROOT/fuzz/corpus/$t"
    -max_total_time="$secs"
    -timeout=10
    -rss_limit_mb=2048
    -artifact_prefix="$artifacts/"
    -print_final_stats=1
    -print_pcs=0
  )
  [[ -f "$ROOT/fuzz/dict/$t.dict" ]] && args+=(-dict="$ROOT/fuzz/dict/$t.dict")
  if [[ "${FUZZ_JOBS:-1}" -gt 1 ]]; then
    args+=(-fork="$FUZZ_JOBS" -ignore_crashes=0)
  fi
  log "$t: fuzzing for ${secs} s (seeds: fuzz/corpus/$t, $(find "$ROOT/fuzz/corpus/$t" -type f | wc -l) files; working corpus: $work)"
  logf="$FUZZ_TARGET_DIR/fuzz-$t.log"
  # libFuzzer reports a status line every few seconds; keep the log, show the progress.
  if "$BIN_DIR/$t" "${args[@]}" >"$logf" 2>&1; then
    stats="$(grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$logf" |
      sed 's/^stat:://' | tr '\n' ' ')"
    cov="$(grep -E '^#[0-9]+.*(DONE|pulse|INITED)' "$logf" | tail -n1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [^ ]+' || true)"
    log "$t: ok: ${stats}${cov:+| $cov}"
  else
    grep -vE '^#[0-9]+ +(NEW|REDUCE|pulse)' "$logf" | tail -n 60 >&2
    report_crash "$t"
  fi
done

if ((${#failed[@]})); then
  die "FAILED: ${failed[*]} (after $((SECONDS - started)) s)"
fi
log "all targets passed (${targets[*]}, ${secs} s each) in $((SECONDS - started)) s"
