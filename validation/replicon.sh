#!/usr/bin/env bash
# Replica-symmetric stability against simulation: the replicon eigenvalue of every stage's
# fixed point (the observable `replicon`; RS is exact only below 1) next to the theory's
# minimal training objective per sample (free energy / alpha) and the lowest training
# objective per sample that the simulations reach (best of their initialisations, the same
# model files: theory observable and simulation report `train`). About 15 minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
toolkit=${TOOLKIT:-target/release/toolkit}
out=validation/replicon
mkdir -p $out
work=$(mktemp -d)
rm -f $out/*.jsonl
# --out starts a fresh file, so each sweep writes its own and they are joined below.
for sigma0 in 0.5 0; do
  $toolkit run models/pretrain.lra --set sigma0=$sigma0 --sweep alpha0=0.5,0.75,1,1.5,2,4,8,16 \
    --no-stability --format json --out "$work/theory_pretrain_$sigma0.jsonl" > /dev/null
  $toolkit simulate models/pretrain.lra --set sigma0=$sigma0 --sweep alpha0=0.5,0.75,1,1.5,2,4,8,16 \
    --d 200,400 --seeds 16 --format json --out "$work/simulation_pretrain_$sigma0.jsonl" > /dev/null
done
$toolkit run models/lora.lra --sweep alpha1=0.25,0.5,1,2,4,8 --no-stability --format json \
  --out "$work/theory_lora_alpha1.jsonl" > /dev/null
$toolkit run models/lora.lra --set alpha1=2 --sweep alpha0=2,4,16 --no-stability --format json \
  --out "$work/theory_lora_alpha0.jsonl" > /dev/null
$toolkit simulate models/lora.lra --sweep alpha1=0.25,0.5,1,2,4,8 --d 200,400 --seeds 16 \
  --format json --out "$work/simulation_lora_alpha1.jsonl" > /dev/null
$toolkit simulate models/lora.lra --set alpha1=2 --sweep alpha0=2,4,16 --d 200,400 --seeds 16 \
  --format json --out "$work/simulation_lora_alpha0.jsonl" > /dev/null
for kind in theory simulation; do
  cat "$work/${kind}_pretrain_0.5.jsonl" "$work/${kind}_pretrain_0.jsonl" > $out/${kind}_pretrain.jsonl
  cat "$work/${kind}_lora_alpha1.jsonl" "$work/${kind}_lora_alpha0.jsonl" > $out/${kind}_lora.jsonl
done
python3 validation/replicon_table.py $out | tee $out/summary.md
