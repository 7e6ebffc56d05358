//! Bayes-optimal binary perceptron (Rademacher teacher, sign activation): the first-order
//! transition to perfect generalisation at the published alpha_IT = 1.245 (G. Gyorgyi,
//! Phys. Rev. A 41, 7097 (1990)), and the fixed-point equations checked by independent
//! quadrature.

mod common;

use std::collections::BTreeMap;
use std::f64::consts::{LN_2, PI};

use common::{model_path, observable};
use toolkit::pipeline::{self, LoadedModel, RunOptions};

const MODEL: &str = "perceptron_binary.lra";

/// Free entropy of the informative (m < 1) branch: the fixed point reached from the `informed` start.
fn informative_free_entropy(loaded: &LoadedModel, alpha: f64) -> f64 {
    let overrides = BTreeMap::from([("alpha".to_string(), alpha)]);
    let options = RunOptions { solver: Vec::new(), stability: false };
    let point = pipeline::solve(loaded, &overrides, &options, &[]).unwrap_or_else(|e| panic!("alpha {alpha}: {e}"));
    let informed = point
        .fixed_points
        .iter()
        .find(|f| f.start == "informed")
        .unwrap_or_else(|| panic!("alpha {alpha}: the informed start found no fixed point"));
    let m = informed.order_parameters["m"].as_f64().unwrap();
    assert!(m < 0.95, "alpha {alpha}: the informed start should stay on the informative branch, m = {m}");
    informed.free_energy
}

#[test]
fn information_theoretic_transition_is_at_the_published_alpha() {
    // The perfect-recovery branch (m = 1) has free entropy exactly -ln 2: alpha_IT is where the
    // informative branch crosses it.
    let loaded = pipeline::load(&model_path(MODEL)).expect("model loads");
    let gap = |alpha: f64| informative_free_entropy(&loaded, alpha) + LN_2;
    let (mut low, mut high) = (1.1, 1.4);
    assert!(gap(low) > 0.0 && gap(high) < 0.0, "no sign change of phi + ln 2 on [{low}, {high}]");
    while high - low > 1e-9 {
        let mid = 0.5 * (low + high);
        if gap(mid) > 0.0 {
            low = mid;
        } else {
            high = mid;
        }
    }
    let alpha_it = 0.5 * (low + high);
    println!("alpha_IT = {alpha_it:.9} (published 1.245; independent computation 1.2446839899)");
    assert!((alpha_it - 1.245).abs() < 5e-4, "alpha_IT = {alpha_it} does not round to the published 1.245");
}

#[test]
fn fixed_point_solves_the_scalar_equations_by_independent_quadrature() {
    let alpha = 1.2;
    let point = common::solve(MODEL, &[("alpha", alpha)]);
    let m = point.order_parameters["m"].as_f64().unwrap();
    let mh = point.order_parameters["mh"].as_f64().unwrap();
    let (nodes, weights) = toolkit::eval::quadrature::gauss_hermite(300);
    let expect = |f: &dyn Fn(f64) -> f64| -> f64 { nodes.iter().zip(&weights).map(|(z, w)| w * f(*z)).sum() };

    // Prior channel: m = E_z tanh(mh + sqrt(mh) z).
    let tanh_mean = expect(&|z| (mh + mh.sqrt() * z).tanh());
    assert!((m - tanh_mean).abs() < 1e-10, "m = {m}, E tanh = {tanh_mean}");

    // Sign channel, in a form the model does not use (Gaussian weight combined with exp(-k^2 xi^2)):
    // mh = alpha/(pi sqrt(1 - m^2)) E_s[1/Phi(s sqrt(m/(1+m)))].
    let c = (m / (1.0 + m)).sqrt();
    let inverse_phi_mean = expect(&|s| (-toolkit::eval::special::log_gaussian_cdf(c * s)).exp());
    let mh_expected = alpha / (PI * (1.0 - m * m).sqrt()) * inverse_phi_mean;
    assert!((mh - mh_expected).abs() < 1e-9 * mh_expected, "mh = {mh}, expected {mh_expected}");

    // Bayes-optimal generalisation error arccos(sqrt(m))/pi.
    let error = observable(&point, "generalisation_error");
    assert!((error - m.sqrt().acos() / PI).abs() < 1e-12, "generalisation error {error} vs arccos(sqrt m)/pi");
    println!("alpha {alpha}: m = {m:.12}, mh = {mh:.12}, E tanh = {tanh_mean:.12}, mh (stable form) = {mh_expected:.12}");
}

#[test]
fn informative_branch_matches_the_reference_table() {
    // (alpha, m, free entropy) from an independent Python computation (Gauss-Hermite 100 for
    // the prior, accurate to ~5e-9 at these mh).
    for &(alpha, m_ref, phi_ref) in &[
        (0.5, 0.2930890301, -0.3210144028),
        (1.0, 0.5607147371, -0.5870389128),
        (1.2, 0.6686613799, -0.6751821719),
        (1.4, 0.7896990380, -0.7495738115),
    ] {
        let point = common::solve(MODEL, &[("alpha", alpha)]);
        let m = observable(&point, "m");
        assert!((m - m_ref).abs() < 1e-8, "alpha {alpha}: m = {m}, reference {m_ref}");
        assert!((point.free_energy - phi_ref).abs() < 1e-8, "alpha {alpha}: phi = {}, reference {phi_ref}", point.free_energy);
    }
}
