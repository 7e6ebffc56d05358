#!/usr/bin/env bash
# Regenerates validation/rsb: the replica-symmetric (RS) and one-step RSB energies of LoRA in
# its effective-noise form at alpha1 = 0.5 (kappa, Delta of pretrain.lra's defaults, alpha0 = 8),
# where the RS theory lies below every simulated minimum. About 25 minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release
toolkit=${TOOLKIT:-target/release/toolkit}
out=validation/rsb
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# RS: the same energy with D = 0.
$toolkit run models/lora_effective.lra --set alpha1=0.5 --no-stability > $out/rs.txt
# The energy at a solution on finer rules. The energy is stationary at a fixed point, so the
# point's own discretisation error enters it only at second order; one damped step from the
# point is taken and the energy read there (tol = residual_tol = 1 accept that step).
read_energy="--no-stability --solver max_iter=1 --solver tol=1 --solver residual_tol=1"
finer_rules() {
    python3 - "$1" "$out/lora_1rsb.lra" "$work" <<'PY'
import json, re, sys
point = json.load(open(sys.argv[1]))["order_parameters"]
text = open(sys.argv[2]).read()
def value(v):
    return "[" + ", ".join(value(x) for x in v) + "]" if isinstance(v, list) else repr(v)
start = "start solution { " + ", ".join(f"{k} = {value(v)}" for k, v in point.items()) + " }"
text = re.sub(r"^start .*$", start, text, flags=re.M)
open(f"{sys.argv[3]}/outer2048.lra", "w").write(text.replace("sobol(256, 4)", "sobol(2048, 4)"))
open(f"{sys.argv[3]}/inner5.lra", "w").write(text.replace("hermite(3)", "hermite(5)"))
PY
}
# 1RSB from the file's start (the parisi = 400 solution), solved on the file's rules (Sobol
# 256 x 4 outer, Gauss-Hermite 3 per dimension for the state sum), then read on finer ones.
for parisi in 300 400 600; do
    $toolkit run $out/lora_1rsb.lra --set parisi=$parisi --no-stability --format json --out $out/rsb_parisi$parisi.json > /dev/null
    finer_rules $out/rsb_parisi$parisi.json
    $toolkit run $work/outer2048.lra --set parisi=$parisi $read_energy > $out/rsb_parisi${parisi}_outer2048.txt
done
# The state sum's rule, at parisi = 400 on the file's outer rule.
finer_rules $out/rsb_parisi400.json
$toolkit run $work/inner5.lra $read_energy > $out/rsb_parisi400_inner5.txt
grep -H -E "^  (train|eps1|gamma) " $out/rs.txt $out/rsb_parisi*.txt
