#!/usr/bin/env bash
# (a copy of ../shared/corpus/fetch.sh, so that a fresh checkout can fetch the corpus: keep in step)
# fetch.sh DIR — a small corpus of real successive release artifacts, for benchmarks (not for tests:
# tests must not need the network). Idempotent; pinned versions; about 120 MB.
#   DIR/botocore/        6 consecutive pure-Python wheels (zip, ~12 MB each)
#   DIR/typescript-tgz/  5 npm tarballs (gzip'd tar, ~4 MB each)
#   DIR/typescript-tar/  the same packages as uncompressed, deterministic tars (~22 MB each)
# Needs python3 -m pip, npm, tar, gzip.
set -euo pipefail
DIR="${1:?usage: fetch.sh DIR}"
mkdir -p "$DIR/botocore" "$DIR/typescript-tgz" "$DIR/typescript-tar"
DIR="$(cd "$DIR" && pwd)"
for v in 1.34.100 1.34.101 1.34.102 1.34.103 1.34.104 1.34.105; do
  ls "$DIR/botocore/botocore-$v-"*.whl >/dev/null 2>&1 ||
    python3 -m pip download -q --no-deps --only-binary=:all: "botocore==$v" -d "$DIR/botocore"
done
for v in 5.5.2 5.5.3 5.5.4 5.6.2 5.6.3; do
  tgz="$DIR/typescript-tgz/typescript-$v.tgz"
  [ -s "$tgz" ] || (cd "$DIR/typescript-tgz" && npm pack --silent "typescript@$v" >/dev/null)
  tar_out="$DIR/typescript-tar/typescript-$v.tar"
  if [ ! -s "$tar_out" ]; then
    tmp="$(mktemp -d)"
    tar -xzf "$tgz" -C "$tmp"
    (cd "$tmp" && find package -print0 | LC_ALL=C sort -z |
      tar --null --no-recursion --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$tar_out" -T -)
    rm -rf "$tmp"
  fi
done
( cd "$DIR" && find . -type f \( -name '*.whl' -o -name '*.tgz' -o -name '*.tar' \) -printf '%P\t%s\n' | sort ) > "$DIR/MANIFEST.tsv"
echo "corpus ready in $DIR ($(wc -l < "$DIR/MANIFEST.tsv") files)"
