//! The pipeline a model file travels: load (with its imports), check, solve. Imported
//! models are solved first with their own params (which the importer's `--set` may
//! override) and expose their order parameters and observables as `alias.name`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Serialize;

use crate::solve::{model_starts, solve_point, FixedPointReport, SaddleProblem, SolverOptions};
use crate::syntax::{parse_model, Item, ModelFile, SyntaxError};
use crate::types::{check_model, collect_declarations, ExportedValue, Exports, Shape, TypeError};

/// A parsed model file and, recursively, the files it imports.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub path: PathBuf,
    pub source: String,
    pub file: ModelFile,
    pub imports: Vec<(String, LoadedModel)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolkitError {
    #[error("cannot read `{path}`: {message}")]
    Io { path: PathBuf, message: String },
    #[error("syntax errors in `{path}`")]
    Syntax { path: PathBuf, text: String, errors: Vec<SyntaxError> },
    #[error("errors in `{path}`")]
    Type { path: PathBuf, text: String, errors: Vec<TypeError> },
    #[error("{flag}: {message}")]
    Flag { flag: String, message: String },
    #[error("`{path}` ({params}): {message}")]
    Solve { path: PathBuf, params: String, message: String },
}

pub fn load(path: &Path) -> Result<LoadedModel, ToolkitError> {
    load_guarded(path, &mut Vec::new())
}

fn load_guarded(path: &Path, stack: &mut Vec<PathBuf>) -> Result<LoadedModel, ToolkitError> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| ToolkitError::Io { path: path.to_path_buf(), message: e.to_string() })?;
    let file = parse_model(&source)
        .map_err(|errors| ToolkitError::Syntax { path: path.to_path_buf(), text: source.clone(), errors })?;
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if stack.contains(&canonical) {
        return Err(ToolkitError::Io { path: path.to_path_buf(), message: "imports form a cycle".into() });
    }
    stack.push(canonical);
    let mut imports = Vec::new();
    for item in &file.items {
        if let Item::Import(import) = item {
            let target = path.parent().unwrap_or(Path::new(".")).join(&import.path);
            if !target.exists() {
                let error = TypeError::new(import.span, format!("cannot find the imported file `{}`", target.display()));
                return Err(ToolkitError::Type { path: path.to_path_buf(), text: source, errors: vec![error] });
            }
            imports.push((import.alias.name.clone(), load_guarded(&target, stack)?));
        }
    }
    stack.pop();
    Ok(LoadedModel { path: path.to_path_buf(), source, file, imports })
}

/// A declared param: default, and which file declares it.
#[derive(Debug, Clone, Serialize)]
pub struct ParamInfo {
    pub name: String,
    pub default: f64,
    pub doc: Option<String>,
    pub file: PathBuf,
}

impl LoadedModel {
    /// Params of this file and of its imports (the importer's own come first).
    pub fn all_params(&self) -> Vec<ParamInfo> {
        let mut params: Vec<ParamInfo> = self
            .file
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Param(p) => Some(ParamInfo { name: p.name.name.clone(), default: p.default, doc: p.doc.clone(), file: self.path.clone() }),
                _ => None,
            })
            .collect();
        for (_, imported) in &self.imports {
            for p in imported.all_params() {
                if !params.iter().any(|q| q.name == p.name) {
                    params.push(p);
                }
            }
        }
        params
    }

    pub fn check_overrides(&self, overrides: &BTreeMap<String, f64>) -> Result<(), ToolkitError> {
        let params = self.all_params();
        for name in overrides.keys() {
            if !params.iter().any(|p| &p.name == name) {
                let known: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
                return Err(ToolkitError::Flag {
                    flag: format!("--set {name}"),
                    message: format!("`{}` declares no param `{name}` (params: {})", self.path.display(), known.join(", ")),
                });
            }
        }
        Ok(())
    }

    pub fn title(&self) -> String {
        self.file
            .items
            .iter()
            .find_map(|i| match i {
                Item::Model(m) => Some(m.title.clone()),
                _ => None,
            })
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

/// A value of an order parameter or observable: a number, or nested arrays.
pub fn shaped_json(shape: Shape, values: &[f64]) -> serde_json::Value {
    let number = |v: f64| serde_json::Number::from_f64(v).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null);
    match shape {
        Shape::Scalar => number(values[0]),
        Shape::Vector(_) => serde_json::Value::Array(values.iter().map(|&v| number(v)).collect()),
        Shape::Matrix(_, c) => serde_json::Value::Array(
            values.chunks(c).map(|row| serde_json::Value::Array(row.iter().map(|&v| number(v)).collect())).collect(),
        ),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FixedPointSummary {
    pub start: String,
    pub selected: bool,
    pub free_energy: f64,
    pub stable: Option<bool>,
    pub iteration_spectral_radius: Option<f64>,
    /// Fraction of the free energy's inner minimisations near a basin switch (relative gap
    /// between their two lowest basins below `solve::NEAR_SWITCH_GAP`); absent without inner
    /// minimisations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub near_switch: Option<f64>,
    pub iterations: u64,
    pub order_parameters: IndexMap<String, serde_json::Value>,
}

/// The result of one solve, in the shape `toolkit run --format json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct PointResult {
    pub model: String,
    pub params: IndexMap<String, f64>,
    pub order_parameters: IndexMap<String, serde_json::Value>,
    pub observables: IndexMap<String, serde_json::Value>,
    pub free_energy: f64,
    pub terms: IndexMap<String, f64>,
    pub converged: bool,
    pub iterations: u64,
    pub residual: f64,
    pub stable: Option<bool>,
    pub fixed_points: Vec<FixedPointSummary>,
    pub failed_starts: Vec<crate::solve::FailedStart>,
    /// Standard error over quasi-Monte-Carlo scrambles (only for rules with several scrambles).
    pub integration_error: IndexMap<String, f64>,
    /// Standard error of the observables over re-solves on each scramble of the free energy
    /// (solver setting `solution_error = 1`); absent otherwise.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub solution_error: IndexMap<String, f64>,
    /// The solver's stopping tolerance: `toolkit compare` counts `solver_tolerance (1 + |value|)`
    /// as the resolution of every prediction.
    pub solver_tolerance: f64,
    /// The `--solver` settings the point was solved with, as `key=value` (`trace` aside, which
    /// changes no result): `--resume` refuses to mix points solved with other settings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub solver_settings: Vec<String>,
    /// The selected point as a raw vector (warm starts along sweeps).
    #[serde(skip)]
    pub unknowns: Vec<f64>,
    /// Every fixed point found as (unknowns, free energy), the selected one first.
    #[serde(skip)]
    pub all_fixed_points: Vec<(Vec<f64>, f64)>,
}

impl PointResult {
    /// Everything an importer may read: order parameters, observables, params.
    fn exports(&self, problem: &SaddleProblem) -> Exports {
        let mut exports = Exports::new();
        for u in &problem.model.unknowns {
            let values: Vec<f64> = u.index.iter().map(|&i| self.unknowns[i]).collect();
            exports.insert(u.name.clone(), ExportedValue { shape: u.shape, values });
        }
        for (name, _) in &self.params {
            exports.insert(name.clone(), ExportedValue { shape: Shape::Scalar, values: vec![self.params[name]] });
        }
        for o in &problem.model.observables {
            let values = match &self.observables[&o.name] {
                serde_json::Value::Number(n) => vec![n.as_f64().unwrap_or(f64::NAN)],
                other => flatten(other),
            };
            exports.insert(o.name.clone(), ExportedValue { shape: o.shape, values });
        }
        exports.insert("free_energy".into(), ExportedValue { shape: Shape::Scalar, values: vec![self.free_energy] });
        exports
    }
}

fn flatten(value: &serde_json::Value) -> Vec<f64> {
    match value {
        serde_json::Value::Number(n) => vec![n.as_f64().unwrap_or(f64::NAN)],
        serde_json::Value::Array(items) => items.iter().flat_map(flatten).collect(),
        _ => vec![f64::NAN],
    }
}

/// How to solve: solver options and extra warm starts.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub solver: Vec<(String, crate::syntax::SettingValue)>,
    pub stability: bool,
}

impl RunOptions {
    /// The solver settings that can change a result, as `key=value` in the order given.
    pub fn result_settings(&self) -> Vec<String> {
        self.solver
            .iter()
            .filter(|(key, _)| key.rsplit('.').next() != Some("trace"))
            .map(|(key, value)| match value {
                crate::syntax::SettingValue::Number(x) => format!("{key}={x}"),
                crate::syntax::SettingValue::Word(w) => format!("{key}={w}"),
            })
            .collect()
    }
}

/// Check a model (and its imports) with default params, reporting every error.
pub fn check(loaded: &LoadedModel) -> Result<(), ToolkitError> {
    for (_, imported) in &loaded.imports {
        check(imported)?;
    }
    // Imports are not solved for a check: their exports are not known, so qualified
    // names are resolved against declarations with placeholder values.
    let imports = placeholder_exports(loaded);
    let type_error = |errors| ToolkitError::Type { path: loaded.path.clone(), text: loaded.source.clone(), errors };
    check_model(&loaded.file, &BTreeMap::new(), &imports).map_err(type_error)?;
    let decls = collect_declarations(&loaded.file).map_err(type_error)?;
    SolverOptions::from_settings(&decls.solve)
        .map_err(|errors| type_error(errors.into_iter().map(|(s, m)| TypeError::new(s.span, m)).collect()))?;
    let has_section = loaded.file.items.iter().any(|i| matches!(i, Item::Simulate(_)));
    if has_section {
        simulation(loaded, &BTreeMap::new())?;
    }
    Ok(())
}

fn placeholder_exports(loaded: &LoadedModel) -> BTreeMap<String, Exports> {
    let mut result = BTreeMap::new();
    for (alias, imported) in &loaded.imports {
        let mut exports = Exports::new();
        let Ok(model) = check_model(&imported.file, &BTreeMap::new(), &placeholder_exports(imported)) else {
            continue;
        };
        for u in &model.unknowns {
            exports.insert(u.name.clone(), ExportedValue { shape: u.shape, values: vec![1.0; u.shape.len()] });
        }
        for o in &model.observables {
            exports.insert(o.name.clone(), ExportedValue { shape: o.shape, values: vec![1.0; o.shape.len()] });
        }
        for p in &model.params {
            exports.insert(p.name.clone(), ExportedValue { shape: Shape::Scalar, values: vec![p.value] });
        }
        exports.insert("free_energy".into(), ExportedValue { shape: Shape::Scalar, values: vec![1.0] });
        result.insert(alias.clone(), exports);
    }
    result
}

/// Solve a model at the given params (imports first), warm-starting from `warm` if given.
pub fn solve(
    loaded: &LoadedModel,
    overrides: &BTreeMap<String, f64>,
    options: &RunOptions,
    warm: &[Vec<f64>],
) -> Result<PointResult, ToolkitError> {
    let (mut result, _) = solve_with_exports(loaded, overrides, options, warm, Stage::Main, &format!("{MAIN_STAGE}."))?;
    result.solver_settings = options.result_settings();
    Ok(result)
}

/// The file being run, or a stage it imports. An imported stage contributes only its
/// exports: its stability and solution error are never shown, so they are not computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Main,
    Import,
}

/// Prefix of solver settings for the file being run alone, not its imports.
const MAIN_STAGE: &str = "main";

/// The solver settings a stage applies, as (key, key as the user wrote it, value): every
/// unprefixed one, then those behind the stage's own prefix (`main.` for the file being
/// run, `stage0.` or `stage0.inner.` for imports), which therefore override.
fn stage_settings<'a>(options: &'a RunOptions, own_prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str, &'a crate::syntax::SettingValue)> {
    let shared = options.solver.iter().filter(|(key, _)| !key.contains('.')).map(|(key, value)| (key.as_str(), key.as_str(), value));
    let own = options.solver.iter().filter_map(move |(key, value)| {
        key.strip_prefix(own_prefix).filter(|rest| !rest.contains('.')).map(|rest| (rest, key.as_str(), value))
    });
    shared.chain(own)
}

/// Every prefixed solver setting is `main.KEY` or names a chain of imports (`stage0.KEY`,
/// `stage0.inner.KEY`).
fn check_stage_prefixes(loaded: &LoadedModel, options: &RunOptions) -> Result<(), ToolkitError> {
    let flag_error = |key: &str, message: String| ToolkitError::Flag { flag: format!("--solver {key}"), message };
    for (key, _) in &options.solver {
        let mut segments: Vec<&str> = key.split('.').collect();
        segments.pop();
        if segments.is_empty() {
            continue;
        }
        let names_import = |model: &LoadedModel, alias: &str| model.imports.iter().any(|(a, _)| a == alias);
        if segments == [MAIN_STAGE] {
            if names_import(loaded, MAIN_STAGE) {
                let message = format!("`{}` imports a model as `{MAIN_STAGE}`, so `{MAIN_STAGE}.` is ambiguous: rename the import", loaded.path.display());
                return Err(flag_error(key, message));
            }
            continue;
        }
        let mut model = loaded;
        for alias in segments {
            let Some((_, imported)) = model.imports.iter().find(|(a, _)| a == alias) else {
                let aliases: Vec<&str> = model.imports.iter().map(|(a, _)| a.as_str()).collect();
                let known = if aliases.is_empty() { "it imports nothing".to_string() } else { format!("imports: {}", aliases.join(", ")) };
                return Err(flag_error(key, format!("`{}` has no import named `{alias}` ({known})", model.path.display())));
            };
            model = imported;
        }
    }
    Ok(())
}

fn solve_with_exports(
    loaded: &LoadedModel,
    overrides: &BTreeMap<String, f64>,
    options: &RunOptions,
    warm: &[Vec<f64>],
    stage: Stage,
    own_prefix: &str,
) -> Result<(PointResult, Exports), ToolkitError> {
    let mut import_exports = BTreeMap::new();
    let mut imported_params = IndexMap::new();
    if stage == Stage::Main {
        check_stage_prefixes(loaded, options)?;
    }
    for (alias, imported) in &loaded.imports {
        let import_prefix = match stage {
            Stage::Main => format!("{alias}."),
            Stage::Import => format!("{own_prefix}{alias}."),
        };
        let (result, exports) = solve_with_exports(imported, overrides, options, &[], Stage::Import, &import_prefix)?;
        for (k, v) in &result.params {
            imported_params.insert(k.clone(), *v);
        }
        import_exports.insert(alias.clone(), exports);
    }
    let problem = build_problem(loaded, overrides, &import_exports)?;
    let mut solver_options = {
        let decls = collect_declarations(&loaded.file).map_err(|errors| ToolkitError::Type {
            path: loaded.path.clone(),
            text: loaded.source.clone(),
            errors,
        })?;
        SolverOptions::from_settings(&decls.solve).map_err(|errors| ToolkitError::Type {
            path: loaded.path.clone(),
            text: loaded.source.clone(),
            errors: errors.into_iter().map(|(s, m)| TypeError::new(s.span, m)).collect(),
        })?
    };
    for (key, flag_key, value) in stage_settings(options, own_prefix) {
        solver_options
            .apply(key, value)
            .map_err(|message| ToolkitError::Flag { flag: format!("--solver {flag_key}"), message })?;
    }
    if stage == Stage::Import {
        solver_options.solution_error = false;
    }
    let stability = options.stability && stage == Stage::Main;
    let mut starts: Vec<(String, Vec<f64>)> = warm
        .iter()
        .filter(|w| w.len() == problem.dimension())
        .enumerate()
        .map(|(i, w)| (format!("warm{}", i + 1), w.clone()))
        .collect();
    starts.extend(model_starts(&problem));
    let params_text = problem.model.params.iter().map(|p| format!("{} = {}", p.name, p.value)).collect::<Vec<_>>().join(", ");
    let solution = solve_point(&problem, &starts, &solver_options, stability).map_err(|e| ToolkitError::Solve {
        path: loaded.path.clone(),
        params: params_text,
        message: e.to_string(),
    })?;
    let result = point_result(loaded, &problem, &solution, imported_params);
    let exports = result.exports(&problem);
    Ok((result, exports))
}

fn build_problem(
    loaded: &LoadedModel,
    overrides: &BTreeMap<String, f64>,
    imports: &BTreeMap<String, Exports>,
) -> Result<SaddleProblem, ToolkitError> {
    let model = check_model(&loaded.file, overrides, imports)
        .map_err(|errors| ToolkitError::Type { path: loaded.path.clone(), text: loaded.source.clone(), errors })?;
    Ok(SaddleProblem::new(model))
}

fn order_parameter_map(problem: &SaddleProblem, x: &[f64]) -> IndexMap<String, serde_json::Value> {
    problem
        .model
        .unknowns
        .iter()
        .map(|u| {
            let values: Vec<f64> = u.index.iter().map(|&i| x[i]).collect();
            (u.name.clone(), shaped_json(u.shape, &values))
        })
        .collect()
}

fn point_result(
    loaded: &LoadedModel,
    problem: &SaddleProblem,
    solution: &crate::solve::Solution,
    imported_params: IndexMap<String, f64>,
) -> PointResult {
    let selected: &FixedPointReport = &solution.selected;
    let mut params: IndexMap<String, f64> = problem.model.params.iter().map(|p| (p.name.clone(), p.value)).collect();
    for (k, v) in imported_params {
        params.entry(k).or_insert(v);
    }
    PointResult {
        model: loaded.title(),
        params,
        order_parameters: order_parameter_map(problem, &selected.unknowns),
        observables: solution.observables.iter().map(|(n, s, v)| (n.clone(), shaped_json(*s, v))).collect(),
        free_energy: selected.free_energy,
        terms: solution.terms.iter().cloned().collect(),
        converged: true,
        iterations: selected.iterations,
        residual: selected.residual,
        stable: selected.stable,
        fixed_points: solution
            .fixed_points
            .iter()
            .map(|f| FixedPointSummary {
                start: f.start.clone(),
                selected: f.unknowns == selected.unknowns,
                free_energy: f.free_energy,
                stable: f.stable,
                iteration_spectral_radius: f.iteration_spectral_radius,
                near_switch: f.near_switch,
                iterations: f.iterations,
                order_parameters: order_parameter_map(problem, &f.unknowns),
            })
            .collect(),
        failed_starts: solution.failed.clone(),
        integration_error: solution.integration_error.iter().cloned().collect(),
        solution_error: solution.solution_error.iter().cloned().collect(),
        solver_tolerance: solution.solver_tolerance,
        solver_settings: Vec::new(),
        unknowns: selected.unknowns.clone(),
        all_fixed_points: std::iter::once(&solution.selected).chain(&solution.fixed_points).map(|f| (f.unknowns.clone(), f.free_energy)).collect(),
    }
}

/// The simulation sections of a model and of the stage it chains to, at the given params.
pub struct Simulation {
    pub spec: crate::types::simulation::SimulationSpec,
    pub chained: Option<crate::types::simulation::SimulationSpec>,
}

/// Params of the imports as exports, so per-sample expressions can read `alias.param`.
fn param_exports(loaded: &LoadedModel, overrides: &BTreeMap<String, f64>) -> BTreeMap<String, Exports> {
    let mut result = BTreeMap::new();
    for (alias, imported) in &loaded.imports {
        let mut exports = Exports::new();
        for p in imported.all_params() {
            let value = overrides.get(&p.name).copied().unwrap_or(p.default);
            exports.insert(p.name.clone(), ExportedValue { shape: Shape::Scalar, values: vec![value] });
        }
        result.insert(alias.clone(), exports);
    }
    result
}

fn simulation_spec(
    loaded: &LoadedModel,
    overrides: &BTreeMap<String, f64>,
    chained: Option<&crate::types::simulation::SimulationSpec>,
    chain_alias: Option<&str>,
) -> Result<Option<crate::types::simulation::SimulationSpec>, ToolkitError> {
    use crate::types::simulation::{check_simulation, ChainColumns};
    let type_error = |errors| ToolkitError::Type { path: loaded.path.clone(), text: loaded.source.clone(), errors };
    let decls = collect_declarations(&loaded.file).map_err(type_error)?;
    let params = crate::types::param_values(&decls, overrides);
    let columns = |alias: &str| -> Option<ChainColumns> {
        let spec = chained?;
        (Some(alias) == chain_alias).then_some(ChainColumns {
            frozen: spec.student_columns,
            teacher: spec.teacher_columns + spec.chain.as_ref().map(|c| c.1.teacher).unwrap_or(0),
        })
    };
    check_simulation(&decls, &params, &param_exports(loaded, overrides), &columns).map_err(type_error)
}

/// The `simulate` section of a model (and of the stage it chains to), at the given params.
pub fn simulation(loaded: &LoadedModel, overrides: &BTreeMap<String, f64>) -> Result<Simulation, ToolkitError> {
    let missing = || ToolkitError::Flag {
        flag: "simulate".into(),
        message: format!("`{}` has no `simulate {{ }}` section describing the finite-size model", loaded.path.display()),
    };
    // A chained stage is an import whose alias the section names in `chain = alias`.
    let chain_alias = loaded.file.items.iter().find_map(|item| match item {
        Item::Simulate(section) => section.settings.iter().find(|(k, _)| k.name == "chain").and_then(|(_, v)| match &v.kind {
            crate::syntax::ExprKind::Var(alias) => Some(alias.name.clone()),
            _ => None,
        }),
        _ => None,
    });
    let chained = match &chain_alias {
        None => None,
        Some(alias) => match loaded.imports.iter().find(|(a, _)| a == alias) {
            Some((_, imported)) => {
                let spec = simulation_spec(imported, overrides, None, None)?;
                if spec.as_ref().is_some_and(|s| s.chain.is_some()) {
                    return Err(ToolkitError::Flag { flag: "simulate".into(), message: "chains of more than two stages are not supported".into() });
                }
                spec
            }
            None => None,
        },
    };
    let spec = simulation_spec(loaded, overrides, chained.as_ref(), chain_alias.as_deref())?.ok_or_else(missing)?;
    Ok(Simulation { spec, chained })
}
