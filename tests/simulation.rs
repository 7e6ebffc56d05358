//! Finite-size simulations described by model files: the per-sample loss program is
//! differentiated correctly, runs are reproducible, the ridge simulation sits on the closed
//! form, fine-tuning on a real pre-trained layer and on its effective-noise surrogate agree
//! (claim C2 at finite d), and the practitioners' LoRA initialisation has a hard phase.

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

/// Mean and standard error of report `name` over seeds `0..seeds` at dimension `d`, for the
/// best run or for one initialisation.
fn estimate(sim: &pipeline::Simulation, d: usize, seeds: u64, name: &str, init: Option<&str>) -> toolkit::sim::Summary {
    let k = sim.spec.report_names.iter().position(|n| n == name).unwrap();
    let values: Vec<f64> = (0..seeds)
        .map(|s| simulate_seed(&sim.spec, sim.chained.as_ref(), d, s).unwrap())
        .map(|seed| match init {
            None => seed.best.values[k],
            Some(init) => seed.runs.iter().find(|r| r.init == init).unwrap().values[k],
        })
        .collect();
    toolkit::sim::summarise(&values)
}

#[test]
fn fine_tuning_on_a_real_pretrained_layer_matches_the_effective_noise_model_at_finite_d() {
    // Claim C2 in simulation: LoRA on the W_hat actually pre-trained (alpha0 = 8) and LoRA on
    // a synthetic W_hat = kappa w0* + sqrt(Delta) g with the same (kappa, Delta) reach the
    // same test error and alignment. (kappa, Delta) are those of the stage-0 theory at
    // alpha0 = 8, which the stage-0 simulations reproduce (validation/pretrain_*).
    let real = simulation("lora.lra", &[("alpha1", 2.0)]);
    let effective = simulation("lora_effective.lra", &[("alpha1", 2.0), ("kappa", 0.9604421), ("Delta", 0.01417412)]);
    for name in ["eps1", "gamma"] {
        let (a, b) = (estimate(&real, 150, 8, name, None), estimate(&effective, 150, 8, name, None));
        let combined = (a.sem.powi(2) + b.sem.powi(2)).sqrt();
        assert!((a.mean - b.mean).abs() < 3.0 * combined, "{name}: real {} +- {} vs effective {} +- {}", a.mean, a.sem, b.mean, b.sem);
    }
}

#[test]
fn lora_from_the_practitioners_initialisation_is_stuck_where_the_global_minimum_is_not() {
    // At alpha1 = 2 the best of the initialisations (the teacher-aligned one) learns the new
    // task, gamma ~ 0.95, while gradient descent from u = 0, v random stays in a worse minimum,
    // worse even than not fine-tuning at all; at alpha1 = 8 both reach the same minimum.
    let hard = simulation("lora_effective.lra", &[("alpha1", 2.0)]);
    let best = estimate(&hard, 150, 6, "gamma", None);
    let practitioners = estimate(&hard, 150, 6, "gamma", Some("lora(0.01)"));
    assert!(best.mean > 0.9 && practitioners.mean < 0.5, "best {best:?}, practitioners {practitioners:?}");
    let easy = simulation("lora_effective.lra", &[("alpha1", 8.0)]);
    let practitioners = estimate(&easy, 150, 6, "gamma", Some("lora(0.01)"));
    assert!(practitioners.mean > 0.98, "practitioners at alpha1 = 8: {practitioners:?}");
}
