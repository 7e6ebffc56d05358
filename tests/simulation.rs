//! Finite-size simulations described by model files: the per-sample loss program is
//! differentiated correctly, runs are reproducible, and the ridge simulation sits on the
//! closed form.

use std::collections::BTreeMap;

use num_dual::Dual64;
use toolkit::pipeline;
use toolkit::sim::experiment::{simulate_seed, ProgramLoss};
use toolkit::sim::SequenceLoss;

fn simulation(name: &str, params: &[(&str, f64)]) -> pipeline::Simulation {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(name);
    let loaded = pipeline::load(&path).expect("model loads");
    let overrides: BTreeMap<String, f64> = params.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    pipeline::simulation(&loaded, &overrides).expect("simulate section checks")
}

#[test]
fn the_attention_loss_program_has_the_gradient_of_its_finite_differences() {
    let sim = simulation("pretrain.lra", &[]);
    let loss = ProgramLoss::new(&sim.spec);
    let (student, teacher, noise) = ([0.7, -1.3], [1.1, 0.4], [0.3, -0.8]);
    for i in 0..2 {
        let seeded: Vec<Dual64> =
            student.iter().enumerate().map(|(j, &v)| if i == j { Dual64::new(v, 1.0) } else { Dual64::from(v) }).collect();
        let derivative = loss.loss(&seeded, &teacher, &noise).eps;
        let step = 1e-6;
        let mut up = student;
        let mut down = student;
        up[i] += step;
        down[i] -= step;
        let numeric = (loss.loss(&up, &teacher, &noise) - loss.loss(&down, &teacher, &noise)) / (2.0 * step);
        assert!((derivative - numeric).abs() < 1e-7, "field {i}: {derivative} vs {numeric}");
    }
    // The test loss is the clean loss: it vanishes at the teacher's own fields.
    assert!(loss.test_loss(&teacher, &teacher).abs() < 1e-15);
}

#[test]
fn a_seed_reproduces_bit_for_bit() {
    let sim = simulation("pretrain.lra", &[("alpha0", 2.0)]);
    let first = simulate_seed(&sim.spec, None, 60, 7).unwrap();
    let second = simulate_seed(&sim.spec, None, 60, 7).unwrap();
    assert_eq!(format!("{first:?}"), format!("{second:?}"));
    let other = simulate_seed(&sim.spec, None, 60, 8).unwrap();
    assert_ne!(first.best.values, other.best.values);
}

#[test]
fn ridge_simulation_agrees_with_the_closed_form() {
    // d = 400, 8 seeds at alpha = 2, lambda = 0.1, noise = 0.5: m = 0.91558, q = 1.20418.
    let sim = simulation("ridge.lra", &[("alpha", 2.0), ("lambda", 0.1), ("noise", 0.5)]);
    let seeds: Vec<_> = (0..8).map(|s| simulate_seed(&sim.spec, None, 400, s).unwrap()).collect();
    let names = &sim.spec.report_names;
    for (name, expected) in [("m", 0.9155836), ("q", 1.2041791)] {
        let k = names.iter().position(|n| n == name).unwrap();
        let values: Vec<f64> = seeds.iter().map(|s| s.best.values[k]).collect();
        let estimate = toolkit::sim::summarise(&values);
        assert!(
            (estimate.mean - expected).abs() < 4.0 * estimate.sem.max(1e-3),
            "{name}: {} +- {} vs {expected}",
            estimate.mean,
            estimate.sem
        );
    }
}

#[test]
fn overlaps_are_reported_sign_invariantly() {
    // The attention is even in W, so |M| is the same whichever sign training lands on.
    let sim = simulation("pretrain.lra", &[("alpha0", 4.0)]);
    let k = sim.spec.report_names.iter().position(|n| n == "m0").unwrap();
    let seed = simulate_seed(&sim.spec, None, 80, 3).unwrap();
    assert!(seed.runs.iter().all(|r| r.values[k] >= 0.0));
    assert!(seed.best.values[k] > 0.5, "the best run recovers the teacher direction");
}
