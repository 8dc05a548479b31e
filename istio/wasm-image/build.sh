#!/usr/bin/env bash
# The filter as a Wasm OCI image that Istio's WasmPlugin pulls (`url: oci://...`), built without
# a container engine, pushed with skopeo, and (with `test`) proven end to end against a real
# registry on 127.0.0.1.
#
#   istio/wasm-image/build.sh layout [DIR]        write the image as an OCI image layout
#                                                 (default target/wasm-image/layout) and print
#                                                 its digest
#   istio/wasm-image/build.sh push REF            push it: REF like
#                                                 registry.example.com/tenant-egress-filter:0.1.0
#                                                 (skopeo; credentials as skopeo takes them);
#                                                 prints the --url/--sha256 to give `generate`
#   istio/wasm-image/build.sh test                a local registry (Debian's docker-registry) on
#                                                 127.0.0.1: push, pull back, check the module and
#                                                 the digest, and that `tenant-egress generate`
#                                                 pins exactly that digest (scripts/test.sh)
#
# The image is Istio's "compat" Wasm image variant: one layer, a tar holding `plugin.wasm` at the
# root (istio/istio pkg/wasm/imagefetcher.go accepts it beside the OCI-artifact variant). It is
# reproducible: the tar has fixed owners and mtimes and gzip stores no name or time, so the same
# module always gives the same digest, and the digest is the one the registry reports. For an
# oci:// URL, Istio checks the WasmPlugin's sha256 against that image (manifest) digest.
#
# Needs: skopeo (Debian package; installed on first use when run as root), and for `test` the
# docker-registry package. The module: target/dist/tenant_egress_filter.wasm (scripts/setup.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
WASM="${TENANT_EGRESS_WASM:-$TARGET_DIR/dist/tenant_egress_filter.wasm}"
WORK="$TARGET_DIR/wasm-image"
TAG="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)"

log() { printf '==> wasm-image: %s\n' "$*"; }
die() { printf 'error: wasm-image: %s\n' "$*" >&2; exit 1; }

need() { # command package
  command -v "$1" >/dev/null 2>&1 && return
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1 ||
    die "$1 not found (Debian: apt-get install $2)"
  log "installing Debian's $2 (once)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# Writes blob $1 into layout $2 and prints its digest.
blob() {
  local d
  d="$(sha "$1")"
  cp "$1" "$2/blobs/sha256/$d"
  echo "$d"
}

cmd_layout() {
  local out="${1:-$WORK/layout}"
  [[ -f $WASM ]] || die "no module at $WASM (run scripts/setup.sh, or set TENANT_EGRESS_WASM)"
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  rm -rf "$out"
  mkdir -p "$out/blobs/sha256" "$tmp/root"
  cp "$WASM" "$tmp/root/plugin.wasm"
  tar -C "$tmp/root" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --mode=0444 -cf "$tmp/layer.tar" plugin.wasm
  gzip -n -9 -c "$tmp/layer.tar" >"$tmp/layer.tar.gz"
  local diff_id layer layer_size config config_size manifest manifest_size
  diff_id="$(sha "$tmp/layer.tar")"
  layer="$(blob "$tmp/layer.tar.gz" "$out")"
  layer_size="$(stat -c %s "$tmp/layer.tar.gz")"
  # A minimal OCI image config: what makes it a valid image for registries and skopeo.
  printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"istio/wasm-image/build.sh: tenant_egress_filter.wasm as plugin.wasm"}]}' \
    "$diff_id" >"$tmp/config.json"
  config="$(blob "$tmp/config.json" "$out")"
  config_size="$(stat -c %s "$tmp/config.json")"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}],"annotations":{"org.opencontainers.image.title":"tenant-egress-filter","org.opencontainers.image.version":"%s"}}' \
    "$config" "$config_size" "$layer" "$layer_size" "$TAG" >"$tmp/manifest.json"
  manifest="$(blob "$tmp/manifest.json" "$out")"
  manifest_size="$(stat -c %s "$tmp/manifest.json")"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$manifest_size" "$TAG" >"$out/index.json"
  log "OCI layout ${out#"$ROOT"/}:$TAG, digest sha256:$manifest (module sha256 $(sha "$WASM"))" >&2
  echo "sha256:$manifest"
}

# Pushes the layout to REF ($1); prints the digest the registry reports. INSECURE=1: plain HTTP
# (the local test registry).
push() {
  local ref="$1" copy_tls=() inspect_tls=()
  if [[ ${INSECURE:-0} == 1 ]]; then copy_tls=(--dest-tls-verify=false); inspect_tls=(--tls-verify=false); fi
  need skopeo skopeo
  local digest
  digest="$(cmd_layout "$WORK/layout")"
  skopeo copy -q --preserve-digests "${copy_tls[@]}" "oci:$WORK/layout:$TAG" "docker://$ref" >&2
  local remote
  remote="$(skopeo inspect "${inspect_tls[@]}" --format '{{.Digest}}' "docker://$ref")"
  [[ $remote == "$digest" ]] || die "the registry reports $remote for $ref, the layout has $digest"
  echo "$digest"
}

cmd_push() {
  local ref="${1:-}"
  [[ -n $ref ]] || die "usage: build.sh push REGISTRY/REPOSITORY:TAG"
  local digest repo
  digest="$(push "$ref")"
  repo="${ref%:*}"
  log "pushed $ref ($digest). Pin the plugin to it:"
  echo "  tenant-egress generate policy.yaml --url oci://$repo@$digest --sha256 ${digest#sha256:}"
}

cmd_test() {
  need skopeo skopeo
  need docker-registry docker-registry
  command -v curl >/dev/null 2>&1 || die "curl is needed"
  local dir="$WORK/test"
  rm -rf "$dir"
  mkdir -p "$dir/storage"
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  cat >"$dir/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $dir/storage}}
http: {addr: 127.0.0.1:$port}
EOF
  docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
  local registry_pid=$!
  trap 'kill '"$registry_pid"' 2>/dev/null || true; wait '"$registry_pid"' 2>/dev/null || true' EXIT
  local deadline=$((SECONDS + 30))
  until curl -sf "http://127.0.0.1:$port/v2/" >/dev/null; do
    kill -0 "$registry_pid" 2>/dev/null || { cat "$dir/registry.log" >&2; die "docker-registry exited"; }
    ((SECONDS < deadline)) || die "docker-registry did not answer on 127.0.0.1:$port within 30 s"
    sleep 0.2
  done
  log "registry on 127.0.0.1:$port"

  local repo="127.0.0.1:$port/tenant-egress-filter" digest
  digest="$(INSECURE=1 push "$repo:$TAG")"
  log "pushed $repo:$TAG: $digest"

  # The registry serves the same manifest under the digest, with that digest in its header.
  local header
  header="$(curl -sfI -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://127.0.0.1:$port/v2/tenant-egress-filter/manifests/$TAG" |
    tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')"
  [[ $header == "$digest" ]] || die "registry Docker-Content-Digest '$header' != pushed $digest"

  # Pull it back by digest, as the istio-agent does, and take the module out of its one layer.
  skopeo copy -q --src-tls-verify=false "docker://$repo@$digest" "oci:$dir/pulled:x"
  local manifest layers layer
  manifest="$(python3 -c 'import json,sys; i=json.load(open(sys.argv[1])); print(i["manifests"][0]["digest"].split(":")[1])' "$dir/pulled/index.json")"
  [[ "sha256:$manifest" == "$digest" ]] || die "pulled manifest sha256:$manifest != $digest"
  layers="$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(" ".join(l["digest"].split(":")[1] for l in m["layers"]))' "$dir/pulled/blobs/sha256/$manifest")"
  [[ $(wc -w <<<"$layers") == 1 ]] || die "expected one layer, got: $layers"
  layer="$layers"
  mkdir -p "$dir/extract"
  tar -xzf "$dir/pulled/blobs/sha256/$layer" -C "$dir/extract"
  [[ "$(ls "$dir/extract")" == plugin.wasm ]] || die "the layer holds $(ls "$dir/extract"), not plugin.wasm alone"
  cmp -s "$dir/extract/plugin.wasm" "$WASM" || die "the pulled plugin.wasm differs from $WASM"
  log "pulled back by digest: one layer, plugin.wasm identical to the module (sha256 $(sha "$WASM"))"

  # Reproducible: building the layout again gives the same digest.
  local again
  again="$(cmd_layout "$dir/again" 2>/dev/null)"
  [[ $again == "$digest" ]] || die "a second build gave $again, not $digest: the image is not reproducible"

  # The generated manifests pin exactly what was pushed: url @digest and sha256 agree with it.
  local cli="$TARGET_DIR/debug/tenant-egress"
  (cd "$ROOT" && cargo build -q -p tenant-egress-config --bin tenant-egress --locked)
  "$cli" generate "$ROOT/demo/policy" --url "oci://$repo@$digest" --sha256 "${digest#sha256:}" \
    >"$dir/generated.yaml"
  local urls sums n
  n="$(grep -c '^kind: WasmPlugin' "$dir/generated.yaml" || true)"
  ((n >= 1)) || die "generate wrote no WasmPlugin"
  urls="$(grep -E '^  url: ' "$dir/generated.yaml" | sort -u)"
  sums="$(grep -E '^  sha256: ' "$dir/generated.yaml" | sort -u)"
  [[ $urls == "  url: oci://$repo@$digest" ]] || die "generated url(s) '$urls' do not pin $digest"
  [[ $sums == "  sha256: ${digest#sha256:}" ]] || die "generated sha256(s) '$sums' do not equal $digest"
  log "tenant-egress generate: $n WasmPlugin(s) pin url @$digest and sha256 ${digest#sha256:}"
  # A mismatching --sha256 is refused before anything is written.
  if "$cli" generate "$ROOT/demo/policy" --url "oci://$repo@$digest" \
    --sha256 "$(sha "$WASM")" >/dev/null 2>"$dir/mismatch.err"; then
    die "generate accepted a --sha256 that disagrees with the URL's digest"
  fi
  grep -q "Istio requires them to agree" "$dir/mismatch.err" || die "unexpected error: $(cat "$dir/mismatch.err")"
  log "OCI push/pull test passed"
}

case "${1:-layout}" in
  layout) shift || true; cmd_layout "$@" ;;
  push) shift; cmd_push "$@" ;;
  test) cmd_test ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (layout, push, test, --help)" ;;
esac
