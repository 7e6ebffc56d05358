//! The textbook models prove the engine: each prediction is checked against an exact
//! result (closed form or known fixed point).

mod common;

use common::{observable, solve};

/// Ridge regression: Stieltjes transform g(-lambda) of the spectrum of X^T X / d
/// (X of size alpha d x d) solves lambda g^2 + (lambda + alpha - 1) g - 1 = 0; then
/// m = 1 - lambda g and q = 1 - 2 lambda g + lambda^2 g' + noise (g - lambda g').
fn ridge_closed_form(alpha: f64, lambda: f64, noise: f64) -> (f64, f64) {
    let b = lambda + alpha - 1.0;
    let g = (-b + (b * b + 4.0 * lambda).sqrt()) / (2.0 * lambda);
    let slope = g / (lambda + alpha / (1.0 + g) - alpha * g / (1.0 + g).powi(2));
    let m = 1.0 - lambda * g;
    let q = 1.0 - 2.0 * lambda * g + lambda * lambda * slope + noise * (g - lambda * slope);
    (m, q)
}

#[test]
fn ridge_overlaps_agree_with_the_marchenko_pastur_closed_form() {
    let mut worst: f64 = 0.0;
    for &alpha in &[0.1, 0.3, 0.7, 1.0, 1.5, 2.5, 3.5, 5.0] {
        for &lambda in &[0.001, 0.1, 1.0] {
            for &noise in &[0.0, 0.5] {
                let point = solve("ridge.lra", &[("alpha", alpha), ("lambda", lambda), ("noise", noise)]);
                let (m, q) = ridge_closed_form(alpha, lambda, noise);
                let error_m = (observable(&point, "m") - m).abs() / m.abs();
                let error_q = (observable(&point, "q") - q).abs() / q.abs();
                worst = worst.max(error_m).max(error_q);
                assert!(
                    error_m < 1e-8 && error_q < 1e-8,
                    "alpha {alpha}, lambda {lambda}, noise {noise}: m {} vs {m}, q {} vs {q}",
                    observable(&point, "m"),
                    observable(&point, "q")
                );
            }
        }
    }
    println!("worst relative error of m, q over the grid: {worst:.2e}");
}

#[test]
fn ridge_test_error_is_the_estimation_error_plus_the_noise() {
    let point = solve("ridge.lra", &[("alpha", 2.0), ("lambda", 0.1), ("noise", 0.5)]);
    let (m, q) = ridge_closed_form(2.0, 0.1, 0.5);
    assert!((observable(&point, "test_error") - (1.0 - 2.0 * m + q + 0.5)).abs() < 1e-8);
}

/// For the square loss the envelope's curvature is 1/(1 + V) at every field, so the replicon
/// eigenvalue is alpha (V/(1 + V))^2; convexity keeps it below 1.
#[test]
fn ridge_replicon_is_the_closed_form_and_the_solution_is_replica_symmetric() {
    for &alpha in &[0.3, 1.0, 2.5] {
        for &lambda in &[0.001, 0.1, 1.0] {
            let point = solve("ridge.lra", &[("alpha", alpha), ("lambda", lambda), ("noise", 0.5)]);
            let response = point.order_parameters["V"].as_f64().unwrap();
            let expected = alpha * (response / (1.0 + response)).powi(2);
            let replicon = observable(&point, "replicon");
            assert!((replicon - expected).abs() < 1e-10, "alpha {alpha}, lambda {lambda}: {replicon} vs {expected}");
            assert!(replicon < 1.0);
        }
    }
}

#[test]
fn gaussian_spiked_wigner_overlap_is_one_minus_inverse_snr_above_the_transition() {
    for &snr in &[0.3, 0.6, 0.9, 1.2, 1.5, 2.0, 3.0, 5.0] {
        let point = solve("spiked_wigner_gauss.lra", &[("snr", snr)]);
        let expected = (1.0 - 1.0 / snr).max(0.0);
        let m = observable(&point, "m");
        assert!((m - expected).abs() < 1e-6, "snr {snr}: m = {m}, expected {expected}");
    }
}

#[test]
fn rademacher_spiked_wigner_has_its_transition_at_snr_one() {
    for &snr in &[0.5, 0.9] {
        let point = solve("spiked_wigner_rademacher.lra", &[("snr", snr)]);
        assert!(observable(&point, "m") < 1e-6, "snr {snr}: m should vanish");
    }
    let mut previous = 0.0;
    for &snr in &[1.1, 1.5, 2.0, 3.0] {
        let point = solve("spiked_wigner_rademacher.lra", &[("snr", snr)]);
        let m = observable(&point, "m");
        assert!(m > previous + 1e-3, "snr {snr}: m = {m} should grow with snr");
        previous = m;
        // Above the transition the uninformative fixed point exists but is unstable.
        let uninformed = point.fixed_points.iter().find(|f| f.order_parameters["m"].as_f64().unwrap() < 1e-8);
        if let Some(f) = uninformed {
            assert_ne!(f.stable, Some(true), "snr {snr}: m = 0 must not be stable");
            assert!(!f.selected);
        }
    }
}

#[test]
fn rademacher_spiked_wigner_solves_its_scalar_fixed_point_equation() {
    // m = E_z tanh(snr m + sqrt(snr m) z), checked by independent high-order quadrature.
    let snr = 2.0;
    let m = observable(&solve("spiked_wigner_rademacher.lra", &[("snr", snr)]), "m");
    let (nodes, weights) = toolkit::eval::quadrature::gauss_hermite(200);
    let rhs: f64 = nodes.iter().zip(&weights).map(|(z, w)| w * (snr * m + (snr * m).sqrt() * z).tanh()).sum();
    assert!((m - rhs).abs() < 1e-9, "m = {m}, E tanh = {rhs}");
}
