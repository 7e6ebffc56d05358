#!/usr/bin/env bash
# Regenerates validation/ridge: ridge theory against simulation at d = 250 and 1000, 8 seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
${TOOLKIT:-target/release/toolkit} compare models/ridge.lra --d 250,1000 --seeds 8 --set lambda=0.1 --set noise=0.5 \
  --sweep alpha=0.5,1,2,4 --theory-points 30 --out validation/ridge | tee validation/ridge/summary.txt
