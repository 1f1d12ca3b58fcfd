#!/usr/bin/env bash
# The newcomer's entry point, on a fresh machine or a warm one:
#
#   bash infra/bootstrap.sh demo    install, start the local stack, run a small simulated day
#                                   end to end, then serve the Dagster UI (Ctrl-C stops the UI;
#                                   `evcharging stack down` stops the services)
#   bash infra/bootstrap.sh test    install, then run the whole test suite against the real stack
#   bash infra/bootstrap.sh install install only; prints the venv to activate
#
# Heavy things are cached under ~/.cache/evcharging (EVCHARGING_CACHE_DIR), keyed by version:
# the Python venv (by the hash of pyproject.toml), Go binaries, Maven jars. Each step prints how
# long it took.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROJECT_DIR=$(pwd)
CACHE_DIR=${EVCHARGING_CACHE_DIR:-$HOME/.cache/evcharging}
mkdir -p "$CACHE_DIR"

TIMINGS=()
step() {  # step NAME COMMAND... — run, time, remember
  local name=$1; shift
  local started=$SECONDS
  echo "[bootstrap] $name ..." >&2
  "$@"
  TIMINGS+=("$(printf '%-28s %5ss' "$name" $((SECONDS - started)))")
}
print_timings() {
  echo "[bootstrap] step timings:" >&2
  printf '  %s\n' "${TIMINGS[@]}" >&2
}

find_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$candidate"; return
    fi
  done
  echo "[bootstrap] error: Python 3.11 is required (python3.11 or python3 on PATH)" >&2
  exit 1
}

PYTHON=$(find_python)
# The venv is keyed by the pinned dependencies only: other edits to pyproject.toml reuse it.
VENV_KEY=$("$PYTHON" -c 'import hashlib, json, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
key = [p["requires-python"], p["dependencies"], p.get("optional-dependencies")]
print(hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12])')
VENV=${EVCHARGING_VENV:-$CACHE_DIR/venv-py311-$VENV_KEY}

install_python() {
  if [[ ! -f "$VENV/.complete" ]]; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip 'setuptools>=77' wheel
    "$VENV/bin/pip" install --quiet --progress-bar off -e "$PROJECT_DIR[test]"
    touch "$VENV/.complete"
  else
    # The venv is shared by every clone on this machine: point the editable install at this one.
    "$VENV/bin/pip" install --quiet --no-deps --no-build-isolation -e "$PROJECT_DIR" 2>/dev/null
  fi
}

install_system() {
  # Debian's PostgreSQL 15 is FerretDB's backend; install it if the machine lacks it.
  if [[ ! -x /usr/lib/postgresql/15/bin/postgres ]]; then
    if [[ $(id -u) -eq 0 ]]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    else
      echo "[bootstrap] error: PostgreSQL 15 server binaries missing: sudo apt-get install postgresql-15" >&2
      exit 1
    fi
  fi
  # Debian's Chromium for the browser test of the Dagster UI (Playwright drives it; Playwright's
  # own browser download cannot work here).
  if ! command -v chromium >/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "[bootstrap] error: Chromium missing (the UI test needs it): sudo apt-get install chromium" >&2
      exit 1
    fi
  fi
  for tool in go java mvn git; do
    command -v "$tool" >/dev/null || { echo "[bootstrap] error: '$tool' is required on PATH" >&2; exit 1; }
  done
}

export PATH="$VENV/bin:$PATH"
export EVCHARGING_CACHE_DIR=$CACHE_DIR

command=${1:-}
case "$command" in
  install)
    step "system packages" install_system
    step "python venv + packages" install_python
    step "native stack builds" evcharging stack install
    print_timings
    echo "activate with: source $VENV/bin/activate" >&2
    ;;
  test)
    step "system packages" install_system
    step "python venv + packages" install_python
    step "native stack builds" evcharging stack install
    print_timings
    # The suite starts the stack itself (and stops what it started).
    step "test suite" python -m pytest "${@:2}"
    print_timings
    ;;
  demo)
    step "system packages" install_system
    step "python venv + packages" install_python
    step "native stack builds" evcharging stack install
    step "stack up" evcharging stack up
    print_timings
    exec evcharging demo "${@:2}"
    ;;
  *)
    sed -n '2,13p' "$0" >&2
    exit 2
    ;;
esac
