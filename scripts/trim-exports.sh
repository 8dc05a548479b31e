#!/usr/bin/env bash
# usage: scripts/trim-exports.sh IN.wasm OUT.wasm [EXPORTS_FILE]
#
# Keeps only the exports listed in EXPORTS_FILE (default filter/exports.txt; `#` comments and
# blank lines ignored) and removes every other one, with the code and imports only they reach,
# using binaryen's wasm-metadce (installed by scripts/setup.sh into tools/node_modules). The
# proxy-wasm SDK exports every callback of the ABI; Envoy calls only those a module exports,
# so trimming the unused ones saves both module bytes and a VM entry per request and callback.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
in=$1 out=$2 list=${3:-$ROOT/filter/exports.txt}
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
metadce="$ROOT/tools/node_modules/.bin/wasm-metadce"
[[ -x "$metadce" ]] || die "$metadce missing (scripts/setup.sh installs binaryen)"
[[ -f "$in" ]] || die "$in missing"
graph=$(mktemp); trap 'rm -f "$graph"' EXIT
# The graph: one root reaching one node per export to keep.
mapfile -t keep < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$')
(( ${#keep[@]} > 0 )) || die "$list lists no export"
{
  printf '[{"name":"root","root":true,"reaches":['
  sep=""; for e in "${keep[@]}"; do printf '%s"e_%s"' "$sep" "$e"; sep=","; done
  printf ']}'
  for e in "${keep[@]}"; do printf ',{"name":"e_%s","export":"%s"}' "$e" "$e"; done
  printf ']\n'
} >"$graph"
# wasm-metadce prints what it removes on stdout: keep the output quiet.
"$metadce" "$in" --graph-file "$graph" -o "$out" >/dev/null
