#!/usr/bin/env bash
# Installs the validators compiled from Istio's published CRD schemas (Sidecar, WasmPlugin,
# EnvoyFilter, from Istio 1.29.2's crd-all.gen.yaml) into .tools/istio-crds, for
# config/tests/manifests.rs. The npm package @kubernetes-models/istio is pinned, with its whole
# dependency tree, by scripts/istio-crds/package-lock.json (integrity hashes); `npm ci` installs
# exactly that. Idempotent: does nothing when the pinned version is already there.
# TrafficExtension (Istio 1.30) is not in that package: validate.mjs checks it against
# scripts/istio-crds/trafficextension.schema.json with the Ajv installed here.
#
# Needs node and npm (the npm registry is the only network access).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/scripts/istio-crds"
DEST="$ROOT/.tools/istio-crds"
PKG="$DEST/node_modules/@kubernetes-models/istio/package.json"

log() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "node not found on PATH (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || die "npm not found on PATH (Debian: apt-get install npm)"

want="$(node -e 'console.log(require(process.argv[1]).dependencies["@kubernetes-models/istio"])' "$SRC/package.json")"
if [[ -f "$PKG" ]] && cmp -s "$SRC/package-lock.json" "$DEST/package-lock.json" \
   && [[ "$(node -e 'console.log(require(process.argv[1]).version)' "$PKG")" == "$want" ]]; then
  log "Istio CRD validators (@kubernetes-models/istio ${want}) already in .tools/istio-crds"
  exit 0
fi

log "installing Istio CRD validators (@kubernetes-models/istio ${want}) into .tools/istio-crds"
rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
cp "$SRC/package.json" "$SRC/package-lock.json" "$DEST.tmp/"
(cd "$DEST.tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
[[ -f "$DEST.tmp/node_modules/@kubernetes-models/istio/_schemas/NetworkingIstioIoV1Sidecar.js" ]] \
  || die "npm ci succeeded but the Sidecar schema is missing"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
log "Istio CRD validators: $DEST"
