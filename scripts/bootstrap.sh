# Sourced by scripts/demo and scripts/test: make sure xdelta3 and a virtualenv with dg-agent exist.
# Usage: source scripts/bootstrap.sh [extra]   (extra: "test" installs the test tools too)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DG_VENV:-$ROOT/.venv}"
EXTRA="${1:-}"

say() { printf '%s\n' "bootstrap: $*" >&2; }

ensure_xdelta3() {
  command -v xdelta3 >/dev/null 2>&1 && return 0
  say "installing xdelta3 (it is not on PATH)"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo -n"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q xdelta3 >/dev/null 2>&1 ||
      { $sudo apt-get update -q >/dev/null 2>&1 &&
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q xdelta3 >/dev/null; }
  elif command -v brew >/dev/null 2>&1; then
    brew install xdelta >/dev/null
  fi
  command -v xdelta3 >/dev/null 2>&1 || {
    say "could not install xdelta3: install it yourself (apt-get install xdelta3, or brew install xdelta) and rerun"
    exit 1
  }
}

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  say "dg-agent needs Python 3.11 or newer: install it (apt-get install python3, or brew install python) and rerun"
  exit 1
}

ensure_venv() {
  local stamp="$VENV/.dg-installed${EXTRA:+-$EXTRA}"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating a virtualenv in $VENV"
    "$(find_python)" -m venv "$VENV"
  fi
  # Reinstall when pyproject.toml changed since the last install.
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    say "installing dg-agent${EXTRA:+ with its $EXTRA tools} into $VENV"
    local log="$VENV/install.log"
    if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
           "$VENV/bin/python" -m pip install -q -e "$ROOT${EXTRA:+[$EXTRA]}"; } >"$log" 2>&1; then
      tail -20 "$log" >&2
      say "installing failed (full log: $log)"
      exit 1
    fi
    touch "$stamp"
  fi
}

ensure_xdelta3
ensure_venv
export PATH="$VENV/bin:$PATH"
