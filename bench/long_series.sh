#!/usr/bin/env bash
# (a copy of ../shared/corpus/long-series.sh, so that a fresh checkout can fetch a series: keep in step)
# A long release series for benchmarks and tests: COUNT consecutive stable releases of a PyPI package's wheels
# (CPython 3.11, manylinux x86_64, or pure-Python), one folder, file mtimes one minute apart in release order
# (the order dg-agent stores a folder in). Idempotent: wheels already there are kept.
#   long-series.sh PACKAGE [COUNT=40] [DIR=~/.cache/dg-agent-bench/series/PACKAGE] [--before VERSION]
# Example: long-series.sh botocore 40
set -euo pipefail
pkg=${1:?usage: long-series.sh PACKAGE [COUNT] [DIR] [--before VERSION]}; count=${2:-40}
dir=${3:-${XDG_CACHE_HOME:-$HOME/.cache}/dg-agent-bench/series/$pkg}; before=${5:-}
[ "${4:-}" = --before ] || before=""
mkdir -p "$dir"
versions=$(python3 -m pip index versions "$pkg" 2>/dev/null | sed -n 's/^Available versions: //p' | tr ',' '\n' | tr -d ' ' |
  grep -E '^[0-9]+(\.[0-9]+)*$' | python3 -c "
import sys
vs = [tuple(int(p) for p in l.split('.')) for l in sys.stdin.read().split()]
vs.sort(); before = '$before'
if before: vs = [v for v in vs if v < tuple(int(p) for p in before.split('.'))]
print(' '.join('.'.join(map(str, v)) for v in vs[-$count:]))")
[ -n "$versions" ] || { echo "long-series.sh: no versions of $pkg found" >&2; exit 1; }
i=0; t0=$(date +%s)
for v in $versions; do
  have=$(ls "$dir" | grep -iE "^${pkg//-/[-_]}-$v-" | head -1 || true)
  if [ -z "$have" ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
      -d "$dir" "$pkg==$v" >/dev/null 2>&1 || { echo "skip $pkg $v (no matching wheel)" >&2; continue; }
    have=$(ls "$dir" | grep -iE "^${pkg//-/[-_]}-$v-" | head -1)
  fi
  touch -d "@$((t0 - 86400 + i * 60))" "$dir/$have"; i=$((i+1))
done
echo "$dir: $i wheels of $pkg"
