//! Formatting solved points for people and programs: a table, JSON (one object per point,
//! JSON Lines for sweeps), CSV with flattened arrays.

use std::fmt::Write as _;

use crate::pipeline::PointResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{}]", i + 1), item, out);
            }
        }
        serde_json::Value::Number(n) => out.push((prefix.to_string(), n.to_string())),
        serde_json::Value::Null => out.push((prefix.to_string(), "NaN".into())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Column name and value pairs of one point, in a stable order.
pub fn columns(point: &PointResult) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in &point.params {
        out.push((k.clone(), v.to_string()));
    }
    for (k, v) in &point.order_parameters {
        flatten(k, v, &mut out);
    }
    for (k, v) in &point.observables {
        flatten(k, v, &mut out);
    }
    for (k, v) in &point.integration_error {
        out.push((format!("{k}_integration_error"), v.to_string()));
    }
    for (k, v) in &point.solution_error {
        out.push((format!("{k}_solution_error"), v.to_string()));
    }
    out.push(("free_energy".into(), point.free_energy.to_string()));
    out.push(("converged".into(), point.converged.to_string()));
    out.push(("iterations".into(), point.iterations.to_string()));
    out
}

pub fn json_line(point: &PointResult) -> String {
    serde_json::to_string(point).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

pub fn csv(points: &[PointResult]) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if let Some(first) = points.first() {
        let header: Vec<String> = columns(first).into_iter().map(|c| c.0).collect();
        let _ = writer.write_record(&header);
        for p in points {
            let _ = writer.write_record(columns(p).into_iter().map(|c| c.1));
        }
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn number(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => format!("{:.8}", n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::Array(items) => format!("[{}]", items.iter().map(number).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// A readable report of one point.
pub fn table(point: &PointResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", point.model);
    let width = point
        .params
        .keys()
        .chain(point.order_parameters.keys())
        .chain(point.observables.keys())
        .chain(point.terms.keys())
        .map(|k| k.len())
        .max()
        .unwrap_or(8)
        .max(11);
    let _ = writeln!(out, "\nparams");
    for (k, v) in &point.params {
        let _ = writeln!(out, "  {k:<width$}  {v}");
    }
    let _ = writeln!(out, "\norder parameters");
    for (k, v) in &point.order_parameters {
        let _ = writeln!(out, "  {k:<width$}  {}", number(v));
    }
    let _ = writeln!(out, "\nobservables");
    for (k, v) in &point.observables {
        // An observable without an expectation of its own has no spread over scrambles:
        // printing "+- 0" would suggest it is exact, when it inherits the solution's error.
        let integration = point.integration_error.get(k).filter(|e| **e > 0.0).map(|e| format!("+- {e:.1e} integration"));
        let solution = point.solution_error.get(k).map(|e| format!("+- {e:.1e} solution"));
        let parts: Vec<String> = integration.into_iter().chain(solution).collect();
        let error = if parts.is_empty() { String::new() } else { format!("  ({})", parts.join(", ")) };
        let _ = writeln!(out, "  {k:<width$}  {}{error}", number(v));
    }
    let _ = writeln!(out, "\nfree energy terms");
    for (k, v) in &point.terms {
        let _ = writeln!(out, "  {k:<width$}  {v:.10}");
    }
    let _ = writeln!(out, "  {:<width$}  {:.10}", "total", point.free_energy);
    let _ = writeln!(out, "\nfixed points ({} found)", point.fixed_points.len());
    for f in &point.fixed_points {
        let stability = match f.stable {
            Some(true) => "stable",
            Some(false) => "unstable",
            None => "stability unknown",
        };
        let values: Vec<String> = f.order_parameters.iter().take(4).map(|(k, v)| format!("{k} = {}", number(v))).collect();
        // Shown only where some node is near a switch, the warning it is.
        let near_switch = match f.near_switch {
            Some(fraction) if fraction > 0.0 => format!(", {:.2}% of inner minima near a basin switch", 100.0 * fraction),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {} from `{}`: free energy {:.10}, {stability}{near_switch}, {} iterations; {}",
            if f.selected { "*" } else { " " },
            f.start,
            f.free_energy,
            f.iterations,
            values.join(", ")
        );
    }
    for failed in &point.failed_starts {
        let _ = writeln!(out, "    start `{}` did not converge: {}", failed.start, failed.reason);
    }
    let _ = writeln!(out, "\nconverged: residual max|dPhi/dtheta| = {:.2e} after {} iterations", point.residual, point.iterations);
    out
}

/// A compact table for sweeps: one row per point.
pub fn sweep_table(points: &[PointResult], swept: &str) -> String {
    let mut out = String::new();
    let Some(first) = points.first() else { return out };
    let mut header = vec![swept.to_string()];
    header.extend(first.observables.keys().cloned());
    header.push("free_energy".into());
    let _ = writeln!(out, "{}", header.iter().map(|h| format!("{h:>14}")).collect::<String>());
    for p in points {
        let mut row = vec![format!("{:>14.6}", p.params.get(swept).copied().unwrap_or(f64::NAN))];
        for v in p.observables.values() {
            row.push(format!("{:>14}", match v {
                serde_json::Value::Number(n) => format!("{:.6}", n.as_f64().unwrap_or(f64::NAN)),
                _ => "[..]".into(),
            }));
        }
        row.push(format!("{:>14.8}", p.free_energy));
        let _ = writeln!(out, "{}", row.concat());
    }
    out
}

/// Simulation results as CSV: params, dimension, then mean and sem of every report.
pub fn simulation_csv(results: &[crate::sim::experiment::SimulationResult]) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if let Some(first) = results.first() {
        let mut header: Vec<String> = first.params.keys().cloned().collect();
        header.push("d".into());
        header.push("seeds".into());
        for name in first.observables.keys() {
            header.push(format!("{name}_mean"));
            header.push(format!("{name}_sem"));
        }
        header.push("unconverged_runs".into());
        let _ = writer.write_record(&header);
        for r in results {
            let mut row: Vec<String> = r.params.values().map(|v| v.to_string()).collect();
            row.push(r.dimension.to_string());
            row.push(r.seeds.to_string());
            for e in r.observables.values() {
                row.push(e.mean.to_string());
                row.push(e.sem.to_string());
            }
            row.push(r.unconverged_runs.to_string());
            let _ = writer.write_record(&row);
        }
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Simulation results for people: one block per point and dimension.
pub fn simulation_table(results: &[crate::sim::experiment::SimulationResult], swept: Option<&str>) -> String {
    let mut out = String::new();
    for r in results {
        let at = swept.map(|s| format!(", {s} = {}", r.params.get(s).copied().unwrap_or(f64::NAN))).unwrap_or_default();
        let _ = writeln!(out, "{} (d = {}, {} seeds{at})", r.model, r.dimension, r.seeds);
        let _ = writeln!(out, "  {:<16} {:>14} {:>12}   per initialisation", "report", "best run", "+- sem");
        for (name, e) in &r.observables {
            let per_init: Vec<String> = r
                .inits
                .iter()
                .map(|(init, reports)| format!("{init} {:.6} +- {:.1e}", reports[name].mean, reports[name].sem))
                .collect();
            let _ = writeln!(out, "  {name:<16} {:>14.6} {:>12.2e}   {}", e.mean, e.sem, per_init.join("; "));
        }
        let _ = writeln!(
            out,
            "  training objective spread across initialisations: {:.3e}; unconverged runs: {}\n",
            r.objective_spread.mean, r.unconverged_runs
        );
    }
    out
}
