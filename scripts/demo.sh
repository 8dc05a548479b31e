#!/usr/bin/env bash
# The local demo: tenant-egress enforcing an example multi-tenant policy in real Envoys.
#
#   scripts/demo.sh            set up, build, start the demo, send the requests, print the
#                              table; the Envoys keep running for your own curl
#   scripts/demo.sh requests   send the requests again (to a running native or
#                              docker-compose demo; tenant-egress-demo requests)
#   scripts/demo.sh status     which of the demo's Envoys are running
#   scripts/demo.sh stop       stop the Envoys this script started
#   scripts/demo.sh certs      (re)make the mesh CA and workload certificates in
#                              target/demo/pki/ (the run does it; the compose demo needs it)
#   scripts/demo.sh --docker   the same demo in containers (demo/docker-compose.yaml) under a
#                              Docker engine: scripts/docker-demo.sh, which builds the Envoy
#                              image locally when the official one cannot be pulled
#
# What runs (all on 127.0.0.1, fixed ports listed in demo/ports.env):
#   mesh          demo/mesh.yaml: every upstream service (cockroachdb.<ns>:26257, api.<ns>:8080,
#                 logcatcher.logmonkey:80, *.example.com, "the internet")
#   sidecar-<id>  demo/sidecar-<id>.yaml: an Istio-shaped sidecar of one source workload
#                 with the filter and demo/policy/ (prod, prod-batman, uat, dev, nometa,
#                 staging)
#   both ends     sidecar-prod-db: prod's database behind its own sidecar (inbound, mTLS), the
#                 filter deciding on the caller's SPIFFE identity; sidecar-prod-tcp: prod's
#                 caller (its filter, then mTLS); sidecar-uat-bypass: uat's pod with a proxy
#                 of its own and NO filter, presenting uat's valid certificate
# Certificates (a CA and SPIFFE workload certificates) are made at each run in
# target/demo/pki/ (tenant-egress-demo certs); nothing secret is committed.
# Those files, demo/docker-compose.yaml and demo/ports.env are rendered by the Rust test kit
# (tests/src/demo/, the tenant-egress-demo binary), which also sends the request table.
# Run state (pid files, logs, a copy of the .wasm) lives in target/demo/.
#
# Exits non-zero if any request's outcome differs from what the policy says (a smoke test).
# Environment: CARGO_TARGET_DIR (where the filter and CLI are built, as for cargo),
# ENVOY_BIN (an Envoy other than the one scripts/setup.sh installs), TENANT_EGRESS_WASM
# (a .wasm other than the one scripts/setup.sh builds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="$ROOT/target/demo"
READY_TIMEOUT=120  # seconds for all Envoys to report LIVE (ten Envoys, eight with V8, on a busy machine)
STOP_TIMEOUT=5     # seconds for an Envoy to exit after SIGTERM
ENVOY_FLAGS=(--disable-hot-restart --concurrency 1 -l info)

log() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=../demo/ports.env
source "$ROOT/demo/ports.env"
PROCS=(mesh)
for s in $SIDECARS $ENDS; do PROCS+=("sidecar-$s"); done

admin_port() { # process name -> admin port
  if [[ $1 == mesh ]]; then echo "$MESH_ADMIN"; else local k="ADMIN_${1#sidecar-}"; k="${k//-/_}"; echo "${!k}"; fi
}
listener_port() { # sidecar id -> its listener port
  local k="LISTENER_${1//-/_}"; echo "${!k}"
}

# Every fixed port with what uses it.
port_table() {
  echo "$MESH_ADMIN mesh admin"
  for p in $MESH_PORTS; do echo "$p mesh upstream"; done
  for s in $SIDECARS $ENDS; do
    echo "$(listener_port "$s") sidecar-$s listener"
    echo "$(admin_port "sidecar-$s") sidecar-$s admin"
  done
}

# A pid from target/demo/pids/<name>.pid if that process is alive and is our Envoy.
live_pid() {
  local f="$RUN/pids/$1.pid" pid
  [[ -f $f ]] || return 1
  pid="$(cat "$f")"
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid: the process must be running our configuration.
  if [[ -r /proc/$pid/cmdline ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "demo/$1.yaml" || return 1
  fi
  echo "$pid"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

target_dir() {
  local d="${CARGO_TARGET_DIR:-$ROOT/target}"
  [[ $d == /* ]] || d="$ROOT/$d"
  echo "$d"
}

# The demo's tooling (tests/src/bin/demo.rs, on the Rust test kit): renders demo/, checks it
# for drift and sends the request table. Built on first use; cargo makes later builds no-ops.
# (Run as "$(demo_bin)": a failure exits that subshell, and `set -e` the script.)
demo_bin() {
  local dir
  dir="$(target_dir)"
  (cd "$ROOT" && cargo build -q -p tenant-egress-tests --bin tenant-egress-demo --locked --target-dir "$dir") >&2 ||
    die "cannot build tenant-egress-demo (cargo build -p tenant-egress-tests --bin tenant-egress-demo)"
  echo "$dir/debug/tenant-egress-demo"
}

cmd_stop() {
  local stopped=0 name pid f
  for f in "$RUN"/pids/*.pid; do
    [[ -e $f ]] || continue
    name="$(basename "$f" .pid)"
    if pid="$(live_pid "$name")"; then
      kill -TERM "$pid" 2>/dev/null || true
      local deadline=$((SECONDS + STOP_TIMEOUT))
      while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
      log "stopped $name (pid $pid)"
      stopped=$((stopped + 1))
    fi
    rm -f "$RUN/pids/$name.pid"
  done
  ((stopped)) || log "no demo Envoy was running"
}

cmd_status() {
  local name pid any=0
  for name in "${PROCS[@]}"; do
    if pid="$(live_pid "$name")"; then
      printf '  %-20s running (pid %s), admin http://127.0.0.1:%s/\n' "$name" "$pid" "$(admin_port "$name")"
      any=1
    else
      printf '  %-20s not running\n' "$name"
    fi
  done
  ((any)) || return 1
}

cmd_certs() {
  local bin
  bin="$(demo_bin)"
  log "making the mesh CA and workload certificates (target/demo/pki/)"
  "$bin" certs "$RUN/pki"
}

cmd_requests() {
  local bin
  bin="$(demo_bin)"
  log "sending the demo requests and connections (tenant-egress-demo requests)"
  "$bin" requests
}

print_counters() {
  local s admin stats
  for s in $SIDECARS $ENDS; do
    admin="$(admin_port "sidecar-$s")"
    stats="$(curl -s --max-time 5 "http://127.0.0.1:$admin/stats?filter=tenant_egress" |
      sed -e 's/^wasmcustom\.//' | awk -F': ' '$2 != "0" {printf "%s=%s  ", substr($1, 15), $2}')"
    printf '  %-34s %s\n' "sidecar-$s (admin $admin)" "${stats:-(no counters)}"
  done
}

print_help() {
  local prod uat dev batman
  prod="$(listener_port prod)"; batman="$(listener_port prod-batman)"
  uat="$(listener_port uat)"; dev="$(listener_port dev)"
  cat <<EOF

The Envoys keep running. Each sidecar is one source workload; talk to it as that workload would:

  sidecar        listener                admin (stats, logging, config_dump)
EOF
  for s in $SIDECARS; do
    printf '  %-14s http://127.0.0.1:%-6s http://127.0.0.1:%s/\n' "$s" "$(listener_port "$s")" "$(admin_port "sidecar-$s")"
  done
  printf '  %-14s %-23s http://127.0.0.1:%s/\n' "mesh" "(upstreams $(set -- $MESH_PORTS; echo "$1-${!#}"))" "$MESH_ADMIN"
  cat <<EOF

Both ends (TCP to cockroachdb.prod:26257; an HTTP request over it shows who answered):
EOF
  for s in $ENDS; do
    printf '  %-14s tcp://127.0.0.1:%-7s http://127.0.0.1:%s/\n' "$s" "$(listener_port "$s")" "$(admin_port "sidecar-$s")"
  done
  local db bypass prodtcp
  db="$(listener_port prod-db)"; bypass="$(listener_port uat-bypass)"; prodtcp="$(listener_port prod-tcp)"
  cat <<EOF

Try:
  curl -si -H 'Host: cockroachdb.uat:26257'  http://127.0.0.1:$prod/    # prod -> uat's database: 403
  curl -si -H 'Host: cockroachdb:26257'      http://127.0.0.1:$prod/    # prod -> its own database: 200
  curl -si -H 'Host: logcatcher.logmonkey'   http://127.0.0.1:$batman/    # batman-app's exception: 200
  curl -si -H 'Host: cockroachdb.prod:26257' http://127.0.0.1:$uat/    # uat's own sidecar: 403
  curl -si -H 'Host: cockroachdb.prod:26257' http://127.0.0.1:$bypass/    # uat's bypass: refused by prod-db (empty reply)
  curl -si -H 'Host: cockroachdb.prod:26257' http://127.0.0.1:$db/    # plaintext to prod-db: refused (empty reply)
  curl -si -H 'Host: cockroachdb.prod:26257' http://127.0.0.1:$prodtcp/    # prod, allowed at both ends: 200
  curl -si -H 'Host: en.wikipedia.org'       http://127.0.0.1:$dev/    # dev is ALLOW_ANY: passthrough, 200
  curl -s 'http://127.0.0.1:$(admin_port sidecar-prod)/stats?filter=tenant_egress'
  curl -s 'http://127.0.0.1:$(admin_port sidecar-prod-db)/stats?filter=tenant_egress.inbound'
  $CLI_REL explain demo/policy --source-namespace prod \\
      --authority cockroachdb.uat:26257 --cluster 'outbound|26257||cockroachdb.uat.svc.cluster.local'
  $CLI_REL explain demo/policy --at destination --destination-namespace prod \\
      --protocol tcp --caller spiffe://cluster.local/ns/uat/sa/orders \\
      --sni outbound_.26257_._.cockroachdb.prod.svc.cluster.local

Logs (Envoy log with the filter's "denied ..." lines, and the access log): target/demo/logs/
Edit demo/policy/ (settings.yaml, tenants/<name>.yaml), then:
scripts/demo.sh stop && scripts/demo.sh (re-renders the sidecars;
the table's expectations are those of the shipped policy: a row the new policy decides
differently is reported as FAIL, with what the policy now says).
Stop: scripts/demo.sh stop
EOF
}

cmd_run() {
  local started=$SECONDS
  command -v curl >/dev/null 2>&1 || die "curl is needed (readiness checks and the counters)"

  # --- refuse to start over a running demo or busy ports ---------------------------------
  local name pid running=()
  for name in "${PROCS[@]}"; do
    if pid="$(live_pid "$name")"; then running+=("$name (pid $pid)"); fi
  done
  if ((${#running[@]})); then
    die "the demo is already running:
$(printf '  %s\n' "${running[@]}")
  send the requests again: scripts/demo.sh requests
  stop it:                 scripts/demo.sh stop"
  fi
  local busy=() port what
  while read -r port what; do
    if port_busy "$port"; then busy+=("127.0.0.1:$port ($what)"); fi
  done < <(port_table)
  if ((${#busy[@]})); then
    die "ports the demo needs are in use:
$(printf '  %s\n' "${busy[@]}")
  a demo from docker compose (docker compose -f demo/docker-compose.yaml down) or another program?
  a native demo started by this script is stopped with: scripts/demo.sh stop"
  fi

  # --- build ------------------------------------------------------------------------------
  log "set-up: rust targets, Envoy in .venv, the filter (scripts/setup.sh)"
  mkdir -p "$RUN/logs"
  if ! "$ROOT/scripts/setup.sh" 2>&1 | tee "$RUN/logs/setup.log"; then
    die "scripts/setup.sh failed (log: target/demo/logs/setup.log)"
  fi

  local target_dir
  target_dir="$(target_dir)"
  # The module setup.sh built: TENANT_EGRESS_WASM if set, else the path its "filter:" line
  # reports, else the usual places.
  local wasm="${TENANT_EGRESS_WASM:-}" candidate
  if [[ -z $wasm ]]; then
    wasm="$(sed -n 's/^==> filter: \(.*\.wasm\) (.*/\1/p' "$RUN/logs/setup.log" | tail -n 1)"
  fi
  for candidate in "$wasm" "$target_dir/dist/tenant_egress_filter.wasm" \
    "$target_dir/wasm32-wasip1/release/tenant_egress_filter.wasm"; do
    if [[ -n $candidate && -f $candidate ]]; then wasm="$candidate"; break; fi
  done
  [[ -f $wasm ]] || die "cannot find the filter scripts/setup.sh built (set TENANT_EGRESS_WASM=/path/to/tenant_egress_filter.wasm)"
  local cli="$target_dir/debug/tenant-egress"
  CLI_REL="${cli#"$ROOT"/}"
  local envoy="${ENVOY_BIN:-$(cat "$ROOT/.tools/envoy-bin" 2>/dev/null || true)}"
  [[ -x $envoy ]] || die "no Envoy: run scripts/setup.sh (records it in .tools/envoy-bin) or set ENVOY_BIN"

  log "building the CLI (tenant-egress)"
  (cd "$ROOT" && cargo build -q -p tenant-egress-config --bin tenant-egress --locked --target-dir "$target_dir")

  log "validating demo/policy/"
  "$cli" validate "$ROOT/demo/policy"

  log "building the demo's tooling (tenant-egress-demo)"
  local bin
  bin="$(demo_bin)"
  if ! "$bin" check >/dev/null; then
    log "demo/policy/ (or the topology in tests/src/demo/topology.rs) changed: re-rendering the Envoy configurations"
    "$bin" render
    # shellcheck source=../demo/ports.env
    source "$ROOT/demo/ports.env"
  fi
  log "making the mesh CA and workload certificates (target/demo/pki/, fresh keys)"
  "$bin" certs "$RUN/pki"

  # --- start ------------------------------------------------------------------------------
  mkdir -p "$RUN/pids"
  # The sidecars load ./tenant_egress_filter.wasm relative to their working directory.
  cp -f "$wasm" "$RUN/tenant_egress_filter.wasm"
  log "filter: ${wasm#"$ROOT"/} (copied to target/demo/, the sidecars' working directory)"
  log "starting ${#PROCS[@]} Envoys ($("$envoy" --version 2>/dev/null | grep -o 'version: [^ ]*' | head -n1 || echo envoy)), logs in target/demo/logs/"
  local started_names=()
  cleanup_on_failure() {
    local n p
    for n in "${started_names[@]}"; do
      if p="$(live_pid "$n")"; then kill -TERM "$p" 2>/dev/null || true; fi
      rm -f "$RUN/pids/$n.pid"
    done
  }
  trap cleanup_on_failure ERR
  for name in "${PROCS[@]}"; do
    (cd "$RUN" && exec nohup "$envoy" -c "$ROOT/demo/$name.yaml" "${ENVOY_FLAGS[@]}" \
      >"$RUN/logs/$name.log" 2>&1 </dev/null) &
    echo $! >"$RUN/pids/$name.pid"
    started_names+=("$name")
  done

  local t0=$SECONDS deadline=$((SECONDS + READY_TIMEOUT)) pending=("${PROCS[@]}") still
  while ((${#pending[@]})); do
    still=()
    for name in "${pending[@]}"; do
      if ! live_pid "$name" >/dev/null; then
        printf 'error: %s exited during start-up; last lines of target/demo/logs/%s.log:\n' "$name" "$name" >&2
        grep -v '^\[.*\]   ' "$RUN/logs/$name.log" | tail -n 15 >&2 || true
        cleanup_on_failure
        exit 1
      fi
      if [[ "$(curl -s --max-time 1 "http://127.0.0.1:$(admin_port "$name")/ready" || true)" != LIVE* ]]; then
        still+=("$name")
      fi
    done
    pending=("${still[@]+"${still[@]}"}")
    if ((${#pending[@]})); then
      if ((SECONDS >= deadline)); then
        printf 'error: not ready within %ss: %s (logs in target/demo/logs/)\n' "$READY_TIMEOUT" "${pending[*]}" >&2
        cleanup_on_failure
        exit 1
      fi
      sleep 0.2
    fi
  done
  trap - ERR
  log "all Envoys ready ($((SECONDS - t0)) s)"

  # --- requests ---------------------------------------------------------------------------
  local rc=0
  cmd_requests || rc=$?

  log "the filter's counters (GET /stats?filter=tenant_egress on each sidecar's admin port)"
  print_counters
  print_help
  if ((rc)); then
    log "demo finished in $((SECONDS - started)) s, but some requests did not behave as expected (see FAIL above)"
  else
    log "demo finished in $((SECONDS - started)) s"
  fi
  return "$rc"
}

CLI_REL="target/debug/tenant-egress"
case "${1:-run}" in
  run) cmd_run ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  requests) cmd_requests ;;
  certs) cmd_certs ;;
  --docker | docker) exec "$ROOT/scripts/docker-demo.sh" up ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (run, requests, status, stop, certs, --docker, --help)" ;;
esac
