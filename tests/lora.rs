//! Stage 1, rank-one LoRA on the pre-trained attention: eps1 and gamma at three parameter
//! points are locked by snapshots (reviewed against simulations in validation/), and the
//! pre-training reaches the fine-tuning stage only through its effective noise (claim C2).

mod common;

use std::sync::OnceLock;

use common::{observable, rounded, solve};
use toolkit::pipeline::PointResult;

const POINTS: [(&str, &[(&str, f64)]); 3] = [
    ("alpha1_4", &[("alpha1", 4.0)]),
    ("alpha1_2", &[("alpha1", 2.0)]),
    ("alpha1_2_alpha0_4", &[("alpha1", 2.0), ("alpha0", 4.0)]),
];

/// The chained model (stage 0, then stage 1) at `POINTS[index]`, solved once per test run.
fn chained(index: usize) -> &'static PointResult {
    static SOLVED: [OnceLock<PointResult>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    SOLVED[index].get_or_init(|| solve("lora.lra", POINTS[index].1))
}

#[test]
fn fine_tuning_predictions_at_three_points() {
    for (index, (name, _)) in POINTS.iter().enumerate() {
        let point = chained(index);
        let summary = serde_json::json!({
            "params": point.params,
            "eps1": observable(point, "eps1"),
            "gamma": observable(point, "gamma"),
            "kappa0": observable(point, "kappa0"),
            "Delta0": observable(point, "Delta0"),
        });
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_yaml_snapshot!(format!("lora__{name}"), rounded(summary, 5));
        });
    }
}

#[test]
fn pretraining_enters_fine_tuning_only_through_kappa_and_delta() {
    // Chained: stage 0 solved at alpha0 = 4, its (kappa, Delta) handed to stage 1.
    let chained = chained(2);
    let (kappa, delta) = (observable(chained, "kappa0"), observable(chained, "Delta0"));
    // Effective-noise entry point: no pre-training, only (kappa, Delta).
    let effective = solve("lora_effective.lra", &[("kappa", kappa), ("Delta", delta), ("alpha1", 2.0)]);
    assert!(!effective.params.contains_key("alpha0"), "the effective entry point solves no pre-training");
    for name in ["eps1", "gamma", "uu", "vv", "Quu", "Qvv"] {
        let (a, b) = (observable(chained, name), observable(&effective, name));
        assert!((a - b).abs() <= 1e-7 * (1.0 + a.abs()), "{name}: chained {a} vs effective {b}");
    }
    // A different effective noise gives a different fine-tuning error: the interface is
    // not vacuous.
    let noisier = solve("lora_effective.lra", &[("kappa", kappa), ("Delta", 4.0 * delta), ("alpha1", 2.0)]);
    assert!(observable(&noisier, "eps1") > observable(chained, "eps1") * 1.05);
}

#[test]
fn lora_vectors_stay_orthogonal_to_the_pretrained_directions() {
    // The energy is even in (h*, h_hat); the fixed point keeps u, v orthogonal to w0* and
    // w_hat, and LoRA aligns with the new task's u*, v* (gamma near 1 with enough data).
    let point = chained(1);
    for name in ["u_w0", "v_w0", "u_what", "v_what"] {
        assert!(observable(point, name).abs() < 1e-6, "{name} = {}", observable(point, name));
    }
    assert!(observable(point, "gamma") > 0.9);
    // Ridge balances the two LoRA factors: |u| = |v| at the minimum.
    assert!((observable(point, "Quu") - observable(point, "Qvv")).abs() < 1e-4);
}
