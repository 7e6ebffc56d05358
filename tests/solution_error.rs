//! The integration error of a solution: the selected fixed point re-solved on each
//! quasi-Monte-Carlo scramble of the free energy alone (`solution_error = 1`).

mod common;

use std::collections::BTreeMap;

use common::model_path;
use toolkit::pipeline::{self, PointResult, RunOptions};
use toolkit::syntax::SettingValue;

fn solve_with_solution_error(path: &std::path::Path, params: &[(&str, f64)]) -> PointResult {
    let loaded = pipeline::load(path).expect("model loads");
    let overrides: BTreeMap<String, f64> = params.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let options = RunOptions { solver: vec![("solution_error".to_string(), SettingValue::Number(1.0))], stability: false };
    pipeline::solve(&loaded, &overrides, &options, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn pretraining_reports_the_integration_error_of_its_solution() {
    let point = solve_with_solution_error(&model_path("pretrain.lra"), &[("alpha0", 8.0)]);
    for name in ["eps0", "m0", "q0", "kappa", "Delta"] {
        let error = point.solution_error[name];
        assert!(error.is_finite() && error > 0.0 && error < 1e-2, "{name}: solution error {error}");
    }
}

#[test]
fn deterministic_rules_have_no_solution_error() {
    let point = solve_with_solution_error(&model_path("ridge.lra"), &[]);
    assert!(point.solution_error.is_empty());
}

#[test]
fn four_times_the_nodes_moves_the_prediction_by_no_more_than_its_solution_error_says() {
    let coarse = solve_with_solution_error(&model_path("pretrain.lra"), &[("alpha0", 4.0)]);
    let source = std::fs::read_to_string(model_path("pretrain.lra")).unwrap();
    assert!(source.contains("sobol(2048, 4)"));
    let dir = std::env::temp_dir().join(format!("solution_error_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fine_path = dir.join("pretrain_fine.lra");
    std::fs::write(&fine_path, source.replace("sobol(2048, 4)", "sobol(8192, 4)")).unwrap();
    let fine = solve_with_solution_error(&fine_path, &[("alpha0", 4.0)]);
    for name in ["m0", "q0", "Delta"] {
        let (a, b) = (coarse.observables[name].as_f64().unwrap(), fine.observables[name].as_f64().unwrap());
        let combined = coarse.solution_error[name].hypot(fine.solution_error[name]);
        assert!((a - b).abs() <= 4.0 * combined, "{name}: {a} vs {b}, combined solution error {combined}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
