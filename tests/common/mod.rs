//! Helpers shared by the integration tests: solving a model file at given params, and
//! rounding numbers so snapshots do not churn on the last bits.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toolkit::pipeline::{self, PointResult, RunOptions};

pub fn model_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(name)
}

pub fn solve(name: &str, params: &[(&str, f64)]) -> PointResult {
    let loaded = pipeline::load(&model_path(name)).expect("model loads");
    let overrides: BTreeMap<String, f64> = params.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let options = RunOptions { solver: Vec::new(), stability: true };
    pipeline::solve(&loaded, &overrides, &options, &[]).unwrap_or_else(|e| panic!("{name} at {params:?}: {e}"))
}

pub fn observable(point: &PointResult, name: &str) -> f64 {
    point.observables[name].as_f64().unwrap_or_else(|| panic!("observable {name} is not a number"))
}

/// Round every float to `digits` significant digits (snapshots of reviewed predictions).
pub fn rounded(value: serde_json::Value, digits: i32) -> serde_json::Value {
    match value {
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(x) if x != 0.0 && x.is_finite() && !n.is_i64() && !n.is_u64() => {
                let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
                let r = (x * scale).round() / scale;
                // Values that are zero up to the solver's tolerance (an overlap that vanishes
                // by symmetry, stopped at 1e-10) print as 0, so snapshots hold no round-off.
                let r = if r.abs() < 1e-8 { 0.0 } else { r };
                serde_json::json!(r)
            }
            _ => serde_json::Value::Number(n),
        },
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(|v| rounded(v, digits)).collect()),
        serde_json::Value::Object(map) => serde_json::Value::Object(map.into_iter().map(|(k, v)| (k, rounded(v, digits))).collect()),
        other => other,
    }
}
