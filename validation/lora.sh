#!/usr/bin/env bash
# Regenerates validation/lora_*: stage 0 then stage 1 (models/lora.lra, theory) against
# finite-d simulations of the same file (pre-training, then rank-one LoRA on fresh data),
# d = 100, 200, 400, 48 seeds; sigma0 = 0.5, sigma1 = 0, lambda0 = lambda1 = 0.01.
# Each simulated seed trains LoRA from a teacher-aligned initialisation, the practitioners' one
# (u = 0, v with i.i.d. entries of std 0.01 or 1) and a random one; "best" is the lowest
# training objective of the four. The deviations count the theory's integration and solution
# errors (--solver solution_error=1) next to the simulation's standard error.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
toolkit=${TOOLKIT:-target/release/toolkit}
mkdir -p validation/lora_alpha1 validation/lora_alpha0
$toolkit compare models/lora.lra --d 100,200,400 --seeds 48 --set alpha0=8 --log-x --solver solution_error=1 \
  --sweep alpha1=0.25,0.5,1,2,4,8 --out validation/lora_alpha1 | tee validation/lora_alpha1/summary.txt
# alpha0 = 1 is simulated only: its stage 0 selects the uninformative glassy branch and the
# file's stage-1 iteration from it fails (an inner minimisation does not converge, about 20 s).
$toolkit simulate models/lora.lra --d 100,200,400 --seeds 48 --set alpha1=2 --sweep alpha0=1,2,4,16 \
  --format json --out validation/lora_alpha0/simulation_with_alpha0_1.jsonl > /dev/null
$toolkit compare models/lora.lra --d 100,200,400 --seeds 48 --set alpha1=2 --log-x --solver solution_error=1 \
  --sweep alpha0=2,4,16 --out validation/lora_alpha0 | tee validation/lora_alpha0/summary.txt
