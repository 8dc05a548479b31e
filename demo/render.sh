#!/usr/bin/env bash
# Renders demo/sidecar-*.yaml, demo/mesh.yaml, demo/docker-compose.yaml and demo/ports.env
# from demo/policy.yaml, demo/topology.py and demo/sidecar.yaml.tmpl (see demo/render.py).
#
#   demo/render.sh            write them (after editing the policy, the topology or the template)
#   demo/render.sh --check    exit 1 with a diff if a committed file is stale
#
# render.py needs PyYAML. Uses the project's .venv (created by scripts/setup.sh) and installs
# the pinned PyYAML into it when missing; falls back to a python3 on PATH that has PyYAML.
set -euo pipefail

PYYAML_VERSION="6.0.3"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_PY="$ROOT/.venv/bin/python"

has_yaml() { "$1" -c 'import yaml' >/dev/null 2>&1; }

PY=""
if [[ -x "$VENV_PY" ]]; then
  if ! has_yaml "$VENV_PY"; then
    printf '==> installing PyYAML==%s into .venv (demo/render.py reads demo/policy.yaml)\n' "$PYYAML_VERSION" >&2
    "$VENV_PY" -m pip install --disable-pip-version-check -q "PyYAML==${PYYAML_VERSION}" >&2
  fi
  PY="$VENV_PY"
elif command -v python3 >/dev/null 2>&1 && has_yaml python3; then
  PY="python3"
else
  printf 'error: no Python with PyYAML: run scripts/setup.sh (creates .venv) or pip install PyYAML\n' >&2
  exit 2
fi
exec "$PY" "$ROOT/demo/render.py" "$@"
