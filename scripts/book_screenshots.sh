#!/usr/bin/env bash
# Reads the book as a user does (outside CI): builds it, serves it on 127.0.0.1, screenshots the
# key pages with headless Chromium (Debian's `chromium` package) at 1400 px, and checks that the
# op-support page fits that width without horizontal scrolling and that search finds
# "quantize", "R003" and "conv". Screenshots land in target/book-shots/.
#   scripts/book_screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[[ -n $chromium ]] || { echo "needs Chromium: apt-get install chromium (or CHROMIUM=/path)" >&2; exit 2; }
out=target/book-shots
rm -rf "$out" && mkdir -p "$out"
mdbook build book -d "$PWD/$out/book" >/dev/null
cp scripts/book_check.html "$out/book/check.html"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 "$port" --directory "$out/book" >/dev/null 2>&1 &
server=$!
profile=$(mktemp -d)
trap 'kill $server 2>/dev/null; rm -rf "$profile"' EXIT
sleep 1
chrome() {
  timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars "$@" 2>/dev/null
}
pages=(introduction overview/runtime-integration backend/op-support backend/quantization
  troubleshooting/error-codes troubleshooting/profiling overview/cli)
for page in "${pages[@]}"; do
  chrome --screenshot="$out/${page//\//_}.png" --window-size=1400,2400 "http://127.0.0.1:$port/$page.html" >/dev/null
  echo "screenshot: $out/${page//\//_}.png"
done
result=$(chrome --window-size=1400,1000 --virtual-time-budget=20000 --dump-dom "http://127.0.0.1:$port/check.html" |
  sed -n '/<pre id="result">/,/<\/pre>/p' | sed 's/<[^>]*>//g')
echo "$result"
status=0
if ! grep -q "overflowing-tables 0$" <<<"$result"; then
  echo "FAILED: a table on the op-support page scrolls sideways at 1400 px" >&2
  status=1
fi
for term in quantize R003 conv; do
  if ! grep -Eq "^search $term [1-9]" <<<"$result"; then
    echo "FAILED: search finds nothing for $term" >&2
    status=1
  fi
done
exit $status
