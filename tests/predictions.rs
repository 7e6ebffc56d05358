//! One snapshot per model file: the reviewed prediction at the file's default params
//! (order parameters, observables, free-energy terms, fixed points), rounded to 7 digits.

mod common;

use std::collections::BTreeMap;

use toolkit::pipeline::{self, RunOptions};

/// A failed start's reason without the entries of the matrix it quotes: the iterate where a
/// diverging start leaves the domain depends on rounding, the kind of failure does not.
fn without_matrix_entries(value: insta::internals::Content) -> String {
    let reason = value.as_str().unwrap_or_default();
    match reason.find(" (matrix [[") {
        Some(at) => format!("{} (matrix [entries redacted])", &reason[..at]),
        None => reason.to_string(),
    }
}

#[test]
fn predictions_of_every_model_file() {
    insta::glob!(concat!(env!("CARGO_MANIFEST_DIR"), "/models"), "*.lra", |path| {
        let loaded = pipeline::load(path).expect("model loads");
        let options = RunOptions { solver: Vec::new(), stability: true };
        let point = pipeline::solve(&loaded, &BTreeMap::new(), &options, &[]).expect("model solves");
        let value = common::rounded(serde_json::to_value(&point).unwrap(), 7);
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false, snapshot_suffix => ""}, {
            insta::assert_yaml_snapshot!(format!("prediction__{name}"), value, {
                ".residual" => "[residual]",
                ".**.iterations" => "[iterations]",
                ".**.iteration_spectral_radius" => insta::rounded_redaction(3),
                ".failed_starts[].reason" => insta::dynamic_redaction(|value, _| without_matrix_entries(value)),
            });
        });
    });
}
