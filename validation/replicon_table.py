"""Table of validation/replicon: replicon, theory energy per sample, simulated best training
objective per sample (d = 200 and 400) and their difference in standard errors."""
import json
import sys

out = sys.argv[1]


def load(name):
    with open(f"{out}/{name}") as f:
        return [json.loads(line) for line in f]


def key(params, names):
    return tuple(round(params[n], 6) for n in names)


def table(stage, names, alpha, signal):
    theory = {key(r["params"], names): r for r in load(f"theory_{stage}.jsonl")}
    simulation = {}
    for r in load(f"simulation_{stage}.jsonl"):
        simulation[key(r["params"], names) + (r["dimension"],)] = r
    header = " | ".join(names)
    print(f"| {header} | replicon | theory {signal} | theory energy/sample | simulated best (d = 200) | simulated best (d = 400) | deviation (d = 400) | simulated {signal} (d = 400) |")
    print("|" + "---|" * (len(names) + 7))
    for k in sorted(theory):
        t = theory[k]
        observables = t["observables"]
        replicon = observables["replicon"]
        replicon_error = t["integration_error"].get("replicon", 0.0)
        energy = t["free_energy"] / t["params"][alpha]
        cells = []
        for d in (200, 400):
            s = simulation.get(k + (d,))
            cells.append(s)
        def best(s):
            if s is None:
                return "-"
            train = s["observables"]["train"]
            return f"{train['mean']:.5f} +- {train['sem']:.5f}"
        s400 = cells[1]
        deviation = "-"
        simulated_signal = "-"
        if s400 is not None:
            train = s400["observables"]["train"]
            deviation = f"{(energy - train['mean']) / train['sem']:+.1f}"
            o = s400["observables"][signal]
            simulated_signal = f"{o['mean']:.3f} +- {o['sem']:.3f}"
        values = " | ".join(f"{v:g}" for v in k)
        flag = " (broken)" if replicon - 2 * replicon_error > 1 else ""
        print(f"| {values} | {replicon:.3f} +- {replicon_error:.3f}{flag} | {observables[signal]:.3f} | {energy:.5f} | {best(cells[0])} | {best(s400)} | {deviation} | {simulated_signal} |")
    print()


print("## Stage 0 (models/pretrain.lra)\n")
table("pretrain", ["sigma0", "alpha0"], "alpha0", "m0")
print("## Stage 1 (models/lora.lra)\n")
table("lora", ["alpha0", "alpha1"], "alpha1", "gamma")
