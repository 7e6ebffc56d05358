//! Stage 0 of the attention model: the predictions at three parameter points are locked by
//! snapshots (reviewed against simulations in validation/), and the fixed-point structure
//! is the expected one.

mod common;

use common::{observable, rounded, solve};

#[test]
fn pretraining_predictions_at_three_points() {
    for (name, params) in [
        ("alpha0_4", vec![("alpha0", 4.0)]),
        ("alpha0_8", vec![("alpha0", 8.0)]),
        ("alpha0_4_clean", vec![("alpha0", 4.0), ("sigma0", 0.0)]),
    ] {
        let point = solve("pretrain.lra", &params);
        let summary = serde_json::json!({
            "params": point.params,
            "eps0": observable(&point, "eps0"),
            "m0": observable(&point, "m0"),
            "q0": observable(&point, "q0"),
            "kappa": observable(&point, "kappa"),
            "Delta": observable(&point, "Delta"),
        });
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_yaml_snapshot!(format!("pretrain__{name}"), rounded(summary, 5));
        });
    }
}

#[test]
fn the_informative_fixed_point_beats_the_uninformative_one_with_enough_data() {
    let point = solve("pretrain.lra", &[("alpha0", 4.0)]);
    let selected = point.fixed_points.iter().find(|f| f.selected).unwrap();
    assert!(selected.order_parameters["m"].as_f64().unwrap().abs() > 0.9);
    assert_eq!(selected.stable, Some(true));
    // m = 0 is a fixed point too (the energy is even in m), with a higher energy, unstable.
    let uninformative = point.fixed_points.iter().find(|f| f.order_parameters["m"].as_f64().unwrap().abs() < 1e-6);
    let uninformative = uninformative.expect("the m = 0 fixed point is found");
    assert!(uninformative.free_energy > selected.free_energy);
    assert_eq!(uninformative.stable, Some(false));
}

#[test]
fn the_effective_noise_is_what_pretraining_leaves_of_the_teacher() {
    // kappa = m0/rho0 and Delta = q0 - m0^2/rho0 with rho0 = 1.
    let point = solve("pretrain.lra", &[("alpha0", 8.0)]);
    let (m0, q0) = (observable(&point, "m0"), observable(&point, "q0"));
    assert!((observable(&point, "kappa") - m0).abs() < 1e-12);
    assert!((observable(&point, "Delta") - (q0 - m0 * m0)).abs() < 1e-12);
    // More data: a smaller test error than at alpha0 = 4.
    let fewer = solve("pretrain.lra", &[("alpha0", 4.0)]);
    assert!(observable(&point, "eps0") < observable(&fewer, "eps0"));
}

#[test]
fn the_training_energy_observable_is_the_selected_fixed_points_energy_per_sample() {
    // Two fixed points: the informative one is selected, the uninformative one is solved last,
    // so the minimiser caches no longer sit at the selected point when observables are taken.
    let point = solve("pretrain.lra", &[("alpha0", 4.0)]);
    assert_eq!(point.fixed_points.len(), 2);
    assert!(point.fixed_points.last().is_some_and(|f| !f.selected));
    let train = observable(&point, "train");
    assert!((4.0 * train - point.free_energy).abs() < 1e-12 * point.free_energy.abs(), "{train} vs {}", point.free_energy);
    // Its integration error comes from the free energy on each scramble of the channel rule.
    let error = point.integration_error["train"];
    assert!(error > 0.0 && error < 1e-2 * train, "{error}");
}

#[test]
fn without_label_noise_and_with_a_tiny_ridge_the_teacher_is_recovered() {
    // The informative fixed point has q - m^2/rho0 -> 0. Extrapolated steps with qh < 0 used
    // to leave q >= m^2/rho0, the informed start then cycled and m = 0 was selected.
    let point = solve("pretrain.lra", &[("alpha0", 4.0), ("sigma0", 0.0), ("lambda0", 0.001)]);
    assert!(observable(&point, "m0") > 0.99, "{}", observable(&point, "m0"));
    assert!(observable(&point, "Delta") < 1e-4);
}

#[test]
fn both_starts_converge_where_anderson_extrapolation_was_ill_conditioned() {
    // At alpha0 = 15.47 the informed start's third Anderson step once sent q to ~2000; with
    // far-reaching extrapolations rejected it converges (to the mirror image -m of the
    // informative fixed point, which has the same energy).
    let point = solve("pretrain.lra", &[("alpha0", 15.46551724137931)]);
    assert!(point.failed_starts.is_empty(), "{:?}", point.failed_starts);
    let informative: Vec<_> = point.fixed_points.iter().filter(|f| f.order_parameters["m"].as_f64().unwrap().abs() > 0.9).collect();
    assert!(!informative.is_empty());
    // Before, it wandered for thousands of iterations.
    assert!(informative.iter().all(|f| f.iterations < 500), "{:?}", informative.iter().map(|f| f.iterations).collect::<Vec<_>>());
    assert!(observable(&point, "m0") > 0.95);
}

/// The replicon (de Almeida-Thouless) eigenvalue locates where the replica-symmetric
/// prediction is exact: with label noise sigma0 = 0.5, replica symmetry breaks in the glassy
/// window around alpha0 = 1 and is restored with more data; without noise it holds.
#[test]
fn replica_symmetry_breaks_around_alpha0_one_with_label_noise_only() {
    let replicon = |alpha0: f64, sigma0: f64| {
        let point = solve("pretrain.lra", &[("alpha0", alpha0), ("sigma0", sigma0)]);
        let value = observable(&point, "replicon");
        let error = point.integration_error["replicon"];
        (value, error)
    };
    let (broken, error) = replicon(1.0, 0.5);
    assert!(broken - 3.0 * error > 1.0, "alpha0 = 1, sigma0 = 0.5: replicon {broken} +- {error}");
    for (alpha0, sigma0) in [(4.0, 0.5), (1.0, 0.0)] {
        let (value, error) = replicon(alpha0, sigma0);
        assert!(value + 3.0 * error < 1.0, "alpha0 = {alpha0}, sigma0 = {sigma0}: replicon {value} +- {error}");
    }
}

#[test]
fn what_a_start_reaches_does_not_depend_on_the_starts_run_before_it() {
    // Alone, `uninformed` runs after `informed`. Given first (as a warm start), the same
    // vector must reach the same fixed point, to the last bits.
    let loaded = toolkit::pipeline::load(&common::model_path("pretrain.lra")).unwrap();
    let overrides = [("alpha0".to_string(), 4.0)].into_iter().collect();
    let options = toolkit::pipeline::RunOptions { solver: Vec::new(), stability: false };
    let uninformed_start = vec![0.0, 0.5, 1.0, 0.0, 1.0, 1.0];
    let after_informed = toolkit::pipeline::solve(&loaded, &overrides, &options, &[]).unwrap();
    let first = toolkit::pipeline::solve(&loaded, &overrides, &options, &[uninformed_start]).unwrap();
    let reached = |point: &toolkit::pipeline::PointResult, start: &str| {
        point.fixed_points.iter().find(|f| f.start == start).map(|f| f.order_parameters.clone()).unwrap()
    };
    assert_eq!(reached(&first, "warm1"), reached(&after_informed, "uninformed"));
}

#[test]
fn glassy_points_have_inner_minima_near_basin_switches_and_informative_ones_none() {
    // At alpha0 = 0.5 every simulated minimum lies above the RS energy (validation/
    // pretrain_glassy_lambda0); at alpha0 = 8 theory and simulation agree.
    let near_switch = |point: &toolkit::pipeline::PointResult| point.fixed_points.iter().find(|f| f.selected).unwrap().near_switch.unwrap();
    assert!(near_switch(&solve("pretrain.lra", &[("alpha0", 0.5)])) > 0.01);
    assert_eq!(near_switch(&solve("pretrain.lra", &[("alpha0", 8.0)])), 0.0);
}
