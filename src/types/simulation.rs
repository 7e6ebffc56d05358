//! The `simulate { }` section: what a finite-size simulation of the model draws, trains and
//! reports. Settings are checked and turned into numbers, the per-sample loss and the
//! reports into plain programs over the local fields of one sample.

use std::collections::BTreeMap;

use serde::Serialize;

use super::declarations::Declarations;
use super::lower::{constant, lower_plain, PlainProgram};
use super::{Exports, Shape, TypeError};
use crate::syntax::{Expr, ExprKind, Ident, Span};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum PriorSpec {
    Gaussian,
    Rademacher,
    GaussBernoulli(f64),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum InitSpec {
    Teacher { noise: f64 },
    Random { scale: f64 },
    Zero,
    Lora { scale: f64 },
}

/// Column counts of the stage a simulation is chained to (its student is frozen here,
/// its teacher is prepended to ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainColumns {
    pub frozen: usize,
    pub teacher: usize,
}

pub struct SimulationSpec {
    pub tokens: usize,
    pub samples_per_dimension: f64,
    pub teacher_columns: usize,
    pub prior: PriorSpec,
    pub student_columns: usize,
    pub ridge: f64,
    pub noise: usize,
    pub test_samples: Option<usize>,
    pub inits: Vec<(String, InitSpec)>,
    pub chain: Option<(String, ChainColumns)>,
    /// Inputs: student fields (tokens x (frozen + student)), teacher fields, noise.
    pub loss: PlainProgram,
    pub test_loss: PlainProgram,
    /// Inputs: test_error, train_loss, M, Q, R, F; one output per report.
    pub reports: PlainProgram,
    pub report_names: Vec<String>,
}

const SETTINGS: &[&str] =
    &["tokens", "samples", "teacher", "prior", "student", "ridge", "noise", "loss", "test_loss", "init", "chain", "test_samples"];

fn field_shape(rows: usize, cols: usize) -> Shape {
    match (rows, cols) {
        (1, 1) => Shape::Scalar,
        (r, 1) => Shape::Vector(r),
        (r, c) => Shape::Matrix(r, c),
    }
}

fn count(expr: &Expr, params: &BTreeMap<String, f64>, minimum: f64) -> Result<usize, TypeError> {
    let value = constant(expr, params)?;
    if value.fract() != 0.0 || value < minimum || value > 1e6 {
        return Err(TypeError::new(expr.span, format!("expected a whole number >= {minimum}, found {value}")));
    }
    Ok(value as usize)
}

fn init_of(expr: &Expr, params: &BTreeMap<String, f64>) -> Result<(String, InitSpec), TypeError> {
    let (name, args): (&Ident, &[Expr]) = match &expr.kind {
        ExprKind::Var(name) => (name, &[]),
        ExprKind::Call(name, args) => (name, args.as_slice()),
        _ => return Err(TypeError::new(expr.span, "an initialisation is teacher(noise), random(scale), zero or lora(scale)")),
    };
    let argument = |default: f64| -> Result<f64, TypeError> {
        match args {
            [] => Ok(default),
            [a] => constant(a, params),
            _ => Err(TypeError::new(expr.span, format!("`{}` takes at most one argument", name.name))),
        }
    };
    let spec = match name.name.as_str() {
        "teacher" => InitSpec::Teacher { noise: argument(0.1)? },
        "random" => InitSpec::Random { scale: argument(1.0)? },
        "zero" => InitSpec::Zero,
        "lora" => InitSpec::Lora { scale: argument(0.01)? },
        other => {
            return Err(TypeError::new(name.span, format!("unknown initialisation `{other}` (teacher, random, zero, lora)")))
        }
    };
    Ok((name.name.clone(), spec))
}

fn disambiguate(inits: Vec<(String, InitSpec)>) -> Vec<(String, InitSpec)> {
    let shared = |name: &str| inits.iter().filter(|(n, _)| n == name).count() > 1;
    inits
        .iter()
        .map(|(name, spec)| {
            let label = match spec {
                _ if !shared(name) => name.clone(),
                InitSpec::Teacher { noise } => format!("{name}({noise})"),
                InitSpec::Random { scale } | InitSpec::Lora { scale } => format!("{name}({scale})"),
                InitSpec::Zero => name.clone(),
            };
            (label, spec.clone())
        })
        .collect()
}

/// Check the `simulate` section (if any) with the given params; `chain` gives the column
/// counts of the imported stage it names.
pub fn check_simulation(
    decls: &Declarations,
    params: &BTreeMap<String, f64>,
    imports: &BTreeMap<String, Exports>,
    chain_columns: &dyn Fn(&str) -> Option<ChainColumns>,
) -> Result<Option<SimulationSpec>, Vec<TypeError>> {
    let Some(section) = decls.simulate else { return Ok(None) };
    let mut errors = Vec::new();
    let mut settings: BTreeMap<&str, &Expr> = BTreeMap::new();
    for (name, value) in &section.settings {
        if !SETTINGS.contains(&name.name.as_str()) {
            errors.push(TypeError::new(name.span, format!("unknown simulation setting `{}`", name.name)).with_help(format!("settings: {}", SETTINGS.join(", "))));
        } else if settings.insert(name.name.as_str(), value).is_some() {
            errors.push(TypeError::new(name.span, format!("`{}` is set twice", name.name)));
        }
    }
    let required = |key: &str, errors: &mut Vec<TypeError>| -> Option<&Expr> {
        let found = settings.get(key).copied();
        if found.is_none() {
            errors.push(TypeError::new(section.span, format!("the simulation needs `{key} = ...`")));
        }
        found
    };
    let numbers = |key: &str, minimum: f64, default: Option<usize>, errors: &mut Vec<TypeError>| -> usize {
        match (settings.get(key), default) {
            (Some(e), _) => count(e, params, minimum).unwrap_or_else(|err| {
                errors.push(err);
                1
            }),
            (None, Some(d)) => d,
            (None, None) => {
                errors.push(TypeError::new(section.span, format!("the simulation needs `{key} = ...`")));
                1
            }
        }
    };
    let tokens = numbers("tokens", 1.0, None, &mut errors);
    let teacher_columns = numbers("teacher", 1.0, None, &mut errors);
    let student_columns = numbers("student", 1.0, None, &mut errors);
    let noise = numbers("noise", 0.0, Some(0), &mut errors);
    let test_samples = settings.get("test_samples").map(|e| count(e, params, 1.0)).transpose().unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let real = |key: &str, default: Option<f64>, positive: bool, errors: &mut Vec<TypeError>| -> f64 {
        match settings.get(key) {
            Some(e) => match constant(e, params) {
                Ok(v) if v > 0.0 || (!positive && v >= 0.0) => v,
                Ok(v) => {
                    errors.push(TypeError::new(e.span, format!("`{key}` must be {}, found {v}", if positive { "positive" } else { "nonnegative" })));
                    1.0
                }
                Err(err) => {
                    errors.push(err);
                    1.0
                }
            },
            None => default.unwrap_or_else(|| {
                errors.push(TypeError::new(section.span, format!("the simulation needs `{key} = ...`")));
                1.0
            }),
        }
    };
    let samples_per_dimension = real("samples", None, true, &mut errors);
    let ridge = real("ridge", Some(0.0), false, &mut errors);
    let prior = match settings.get("prior").map(|e| &e.kind) {
        None => PriorSpec::Gaussian,
        Some(ExprKind::Var(v)) if v.name == "gaussian" => PriorSpec::Gaussian,
        Some(ExprKind::Var(v)) if v.name == "rademacher" => PriorSpec::Rademacher,
        Some(ExprKind::Call(f, args)) if f.name == "gauss_bernoulli" && args.len() == 1 => match constant(&args[0], params) {
            Ok(rho) if rho > 0.0 && rho <= 1.0 => PriorSpec::GaussBernoulli(rho),
            _ => {
                errors.push(TypeError::new(args[0].span, "a Gauss-Bernoulli density must be a constant in (0, 1]"));
                PriorSpec::Gaussian
            }
        },
        Some(_) => {
            let span = settings["prior"].span;
            errors.push(TypeError::new(span, "the prior is gaussian, rademacher or gauss_bernoulli(rho)"));
            PriorSpec::Gaussian
        }
    };
    let inits = match settings.get("init") {
        None => vec![("teacher".to_string(), InitSpec::Teacher { noise: 0.1 }), ("random".to_string(), InitSpec::Random { scale: 1.0 })],
        Some(e) => {
            let items: Vec<&Expr> = match &e.kind {
                ExprKind::List(items) => items.iter().collect(),
                _ => vec![*e],
            };
            items
                .into_iter()
                .filter_map(|i| match init_of(i, params) {
                    Ok(init) => Some(init),
                    Err(err) => {
                        errors.push(err);
                        None
                    }
                })
                .collect()
        }
    };
    // Several initialisations of one kind (`lora(0.01)`, `lora(1)`) are told apart by their
    // argument in reports.
    let inits = disambiguate(inits);
    let chain = match settings.get("chain").map(|e| (&e.kind, e.span)) {
        None => None,
        Some((ExprKind::Var(alias), span)) => match chain_columns(&alias.name) {
            Some(columns) => Some((alias.name.clone(), columns)),
            None => {
                errors.push(TypeError::new(span, format!("`{}` is not an imported model with a `simulate` section", alias.name)));
                None
            }
        },
        Some((_, span)) => {
            errors.push(TypeError::new(span, "`chain` names an import, e.g. `chain = stage0`"));
            None
        }
    };
    let frozen = chain.as_ref().map(|c| c.1.frozen).unwrap_or(0);
    let total_teacher = teacher_columns + chain.as_ref().map(|c| c.1.teacher).unwrap_or(0);
    let loss_expr = required("loss", &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let loss_expr = loss_expr.expect("checked above");
    let field_inputs = [
        ("h", field_shape(tokens, frozen + student_columns)),
        ("s", field_shape(tokens, total_teacher)),
        ("xi", field_shape(noise.max(1), 1)),
    ];
    let loss = lower_plain(decls, params, imports, &field_inputs, &[loss_expr]);
    let zero_noise;
    let test_expr = match settings.get("test_loss") {
        Some(e) => *e,
        None => {
            zero_noise = loss_expr.clone();
            &zero_noise
        }
    };
    let test_loss = lower_plain(decls, params, imports, &field_inputs, &[test_expr]);
    let report_inputs = [
        ("test_error", Shape::Scalar),
        ("train_loss", Shape::Scalar),
        ("M", field_shape(student_columns, total_teacher)),
        ("Q", field_shape(student_columns, student_columns)),
        ("R", field_shape(total_teacher, total_teacher)),
        ("F", field_shape(student_columns, frozen.max(1))),
    ];
    let report_exprs: Vec<&Expr> = section.reports.iter().map(|r| &r.value).collect();
    let reports = lower_plain(decls, params, imports, &report_inputs, &report_exprs);
    let mut all_errors = Vec::new();
    let mut unwrap = |result: Result<PlainProgram, Vec<TypeError>>| match result {
        Ok(p) => Some(p),
        Err(mut e) => {
            all_errors.append(&mut e);
            None
        }
    };
    let (loss, test_loss, reports) = (unwrap(loss), unwrap(test_loss), unwrap(reports));
    for (program, what, span) in [(&loss, "loss", loss_expr.span), (&test_loss, "test_loss", test_expr.span)] {
        if let Some(p) = program {
            if p.outputs[0].0 != Shape::Scalar {
                all_errors.push(TypeError::new(span, format!("the {what} must be a scalar, found a {}", p.outputs[0].0)));
            }
        }
    }
    if let Some(r) = &reports {
        for (report, (shape, _)) in section.reports.iter().zip(&r.outputs) {
            if *shape != Shape::Scalar {
                all_errors.push(TypeError::new(report.value.span, format!("a report must be a scalar, found a {shape}")));
            }
        }
    }
    if !all_errors.is_empty() {
        return Err(all_errors);
    }
    let _ = Span::default();
    Ok(Some(SimulationSpec {
        tokens,
        samples_per_dimension,
        teacher_columns,
        prior,
        student_columns,
        ridge,
        noise,
        test_samples,
        inits,
        chain,
        loss: loss.expect("checked"),
        test_loss: test_loss.expect("checked"),
        reports: reports.expect("checked"),
        report_names: section.reports.iter().map(|r| r.name.name.clone()).collect(),
    }))
}
