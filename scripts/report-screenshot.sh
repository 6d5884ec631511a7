#!/usr/bin/env bash
# Regenerates docs/report.png, the README's screenshot: the demo run twice on a fresh
# file, its report, and headless Chromium's picture of the page's first 2,000 pixels.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
bin=$PWD/target/release/agentstore
(cd "$work" && "$bin" --db demo.db demo >/dev/null && "$bin" --db demo.db demo >/dev/null \
  && "$bin" --db demo.db report --output report.html >/dev/null)
mkdir -p docs
chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$work/profile" \
  --window-size=1100,2000 --screenshot="$PWD/docs/report.png" "file://$work/report.html" 2>/dev/null
echo "wrote docs/report.png"
