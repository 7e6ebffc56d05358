#!/usr/bin/env bash
# Regenerates validation/pretrain_*: stage-0 theory (models/pretrain.lra) against finite-d
# simulations of the same file, d = 100, 200, 400, 48 seeds, for sigma0 = 0.5 and sigma0 = 0;
# and the glassy point alpha0 = 0.5 against the ridge (pretrain_glassy_lambda0), from a
# strong ridge where the theory holds to the weak one where every simulated minimum lies
# above the replica-symmetric energy.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
toolkit=${TOOLKIT:-target/release/toolkit}
for sigma in 0.5 0; do
  $toolkit compare models/pretrain.lra --d 100,200,400 --seeds 48 --set sigma0=$sigma --set lambda0=0.01 \
    --sweep alpha0=0.5,1,2,4,8,16 --out validation/pretrain_alpha0_sigma$sigma | tee validation/pretrain_alpha0_sigma$sigma/summary.txt
  $toolkit compare models/pretrain.lra --d 100,200,400 --seeds 48 --set sigma0=$sigma --set alpha0=4 \
    --sweep lambda0=0.001,0.01,0.1,1 --out validation/pretrain_lambda0_sigma$sigma | tee validation/pretrain_lambda0_sigma$sigma/summary.txt
done
$toolkit compare models/pretrain.lra --d 100,200,400 --seeds 48 --set alpha0=0.5 \
  --sweep lambda0=0.01,0.03,0.1,0.3,1,3 --log-x --out validation/pretrain_glassy_lambda0 | tee validation/pretrain_glassy_lambda0/summary.txt
