#!/usr/bin/env bash
# Builds the book with the API reference inside it, as CI does (`.ci/run`): rustdoc for every
# library crate (warnings are errors: every public item is documented, every intra-doc link
# resolves), the mdBook, rustdoc's output copied to book/book/api/ (the book links each crate's
# API there), then the link check over the book.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --workspace --no-deps --lib --locked --quiet
mdbook build book
rm -rf book/book/api
cp -r target/doc book/book/api
python3 scripts/check_book_links.py book/book
