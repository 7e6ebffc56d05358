//! Solving: the saddle-point equations dPhi/dtheta = 0 of a checked model, from several
//! starting points; every distinct fixed point is reported with its free energy and local
//! stability, and one is selected (lowest energy for ERM, highest free entropy for
//! Bayes-optimal models). A start that does not converge is reported as such; a point where
//! no start converged is an error.

pub mod equations;
pub mod problem;
pub mod solvers;
pub mod sweep;

use argmin::core::{Executor, State, TerminationReason, TerminationStatus};
use serde::Serialize;

use crate::eval::Search;
use crate::syntax::{Objective, Setting, SettingValue};
use crate::types::{Role, Shape};
pub use problem::SaddleProblem;
use solvers::{project, FixedPoint, Newton, Saddle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Method {
    FixedPoint,
    Newton,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SolverOptions {
    pub method: Method,
    pub damping: f64,
    pub tolerance: f64,
    pub max_iter: u64,
    /// Largest |dPhi/dtheta| accepted at a reported fixed point.
    pub residual_tolerance: f64,
    /// Depth of Anderson acceleration of the fixed-point iteration (0 turns it off).
    pub anderson: usize,
    /// Print every iteration (start, iteration, change, elapsed time) to stderr.
    pub trace: bool,
    /// Re-solve on each quasi-Monte-Carlo scramble of the free energy alone and report the
    /// spread of the observables: the integration error of the solution itself.
    pub solution_error: bool,
}

impl Default for SolverOptions {
    fn default() -> Self {
        SolverOptions { method: Method::FixedPoint, damping: 0.5, tolerance: 1e-10, max_iter: 5000, residual_tolerance: 1e-7, anderson: 0, trace: false, solution_error: false }
    }
}

impl SolverOptions {
    /// Apply one `key = value` setting (from a `solve { }` block or `--solver key=value`).
    pub fn apply(&mut self, key: &str, value: &SettingValue) -> Result<(), String> {
        let number = |v: &SettingValue| match v {
            SettingValue::Number(x) => Ok(*x),
            SettingValue::Word(w) => Err(format!("`{key}` needs a number, found `{w}`")),
        };
        match key {
            "method" => {
                self.method = match value {
                    SettingValue::Word(w) if w == "fixed_point" => Method::FixedPoint,
                    SettingValue::Word(w) if w == "newton" => Method::Newton,
                    _ => return Err("`method` is `fixed_point` or `newton`".into()),
                }
            }
            "damping" => {
                let d = number(value)?;
                if d.is_nan() || d <= 0.0 || d > 1.0 {
                    return Err(format!("`damping` must lie in (0, 1], found {d}"));
                }
                self.damping = d;
            }
            "tol" | "tolerance" => {
                let t = number(value)?;
                if t.is_nan() || t <= 0.0 {
                    return Err(format!("`tol` must be positive, found {t}"));
                }
                self.tolerance = t;
            }
            "residual_tol" => {
                let t = number(value)?;
                if t.is_nan() || t <= 0.0 {
                    return Err(format!("`residual_tol` must be positive, found {t}"));
                }
                self.residual_tolerance = t;
            }
            "max_iter" => {
                let m = number(value)?;
                if m.is_nan() || m < 1.0 || m.fract() != 0.0 {
                    return Err(format!("`max_iter` must be a whole number >= 1, found {m}"));
                }
                self.max_iter = m as u64;
            }
            "anderson" => {
                let m = number(value)?;
                if !(0.0..=20.0).contains(&m) || m.fract() != 0.0 {
                    return Err(format!("`anderson` must be a whole number from 0 to 20, found {m}"));
                }
                self.anderson = m as usize;
            }
            "trace" => self.trace = number(value)? != 0.0,
            "solution_error" => self.solution_error = number(value)? != 0.0,
            other => {
                return Err(format!(
                    "unknown solver setting `{other}` (method, damping, tol, residual_tol, max_iter, anderson, trace, solution_error)"
                ))
            }
        }
        Ok(())
    }

    pub fn from_settings(settings: &[&Setting]) -> Result<Self, Vec<(Setting, String)>> {
        let mut options = SolverOptions::default();
        let mut errors = Vec::new();
        for s in settings {
            if let Err(message) = options.apply(&s.key.name, &s.value) {
                errors.push(((*s).clone(), message));
            }
        }
        if errors.is_empty() {
            Ok(options)
        } else {
            Err(errors)
        }
    }
}

/// One fixed point found from one start.
#[derive(Debug, Clone, Serialize)]
pub struct FixedPointReport {
    pub start: String,
    pub unknowns: Vec<f64>,
    pub free_energy: f64,
    pub iterations: u64,
    pub residual: f64,
    /// Spectral radius of the undamped alternating iteration at the fixed point.
    pub iteration_spectral_radius: Option<f64>,
    pub stable: Option<bool>,
    /// Fraction of the free energy's inner minimisations within [`NEAR_SWITCH_GAP`] of a
    /// basin switch at the fixed point (`None` without inner minimisations).
    pub near_switch: Option<f64>,
}

/// Relative gap between an inner minimisation's two lowest basins below which its node counts
/// as near a basin switch. Where the envelope's minimiser jumps, its slope jumps too; such
/// nodes are where replica symmetry can break even with a replicon below 1.
pub const NEAR_SWITCH_GAP: f64 = 1e-3;

/// A start that did not reach a fixed point.
#[derive(Debug, Clone, Serialize)]
pub struct FailedStart {
    pub start: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Solution {
    pub selected: FixedPointReport,
    pub fixed_points: Vec<FixedPointReport>,
    pub failed: Vec<FailedStart>,
    pub terms: Vec<(String, f64)>,
    pub observables: Vec<(String, Shape, Vec<f64>)>,
    /// Standard error over independent quasi-Monte-Carlo scrambles, per observable.
    pub integration_error: Vec<(String, f64)>,
    /// Standard error of the observables over solutions re-solved on each scramble of the
    /// free energy alone (empty unless `solution_error` is set and the energy has scrambles).
    pub solution_error: Vec<(String, f64)>,
    /// The solver's stopping tolerance (fixed point: `tol`, relative change; Newton:
    /// `residual_tol`): how finely the fixed point is resolved, whatever the integration rule.
    pub solver_tolerance: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SolveError {
    #[error("no start converged to a fixed point:\n{0}")]
    NotConverged(String),
    #[error("{0}")]
    Evaluation(String),
}

/// Default values for entries a start does not give.
fn default_start(problem: &SaddleProblem, informed: bool) -> Vec<f64> {
    let model = &problem.model;
    (0..model.unknown_count())
        .map(|i| {
            let positive = !matches!(model.unknown_domains[i], crate::syntax::Domain::Real | crate::syntax::Domain::Integer);
            let nonnegative = model.unknown_domains[i] == crate::syntax::Domain::Nonnegative;
            match (model.unknown_roles[i], positive, informed) {
                (_, true, false) if nonnegative => 0.0,
                (_, true, _) => 1.0,
                (Role::Order, false, true) => 0.5,
                (Role::Conjugate, false, true) => 1.0,
                (_, false, false) => 0.0,
            }
        })
        .collect()
}

/// The named starting points of a model: its `start` blocks, or informed and uninformed defaults.
pub fn model_starts(problem: &SaddleProblem) -> Vec<(String, Vec<f64>)> {
    let model = &problem.model;
    if model.starts.is_empty() {
        return vec![
            ("informed".to_string(), default_start(problem, true)),
            ("uninformed".to_string(), default_start(problem, false)),
        ];
    }
    let base = default_start(problem, true);
    model
        .starts
        .iter()
        .map(|(name, values)| (name.clone(), values.iter().zip(&base).map(|(v, b)| v.unwrap_or(*b)).collect()))
        .collect()
}

/// Prints one line per solver iteration to stderr (`trace = 1`): the change and the iterate.
struct IterationTrace {
    unknowns: Vec<String>,
    start: String,
    clock: std::time::Instant,
}

impl argmin::core::observers::Observe<solvers::SaddleState> for IterationTrace {
    fn observe_iter(&mut self, state: &solvers::SaddleState, _kv: &argmin::core::KV) -> Result<(), argmin::core::Error> {
        eprintln!(
            "start `{}`: iteration {:>4}  change {:.3e}  {:.2} s  {}",
            self.start,
            state.get_iter(),
            state.get_cost(),
            self.clock.elapsed().as_secs_f64(),
            state.get_param().map(|x| problem::describe_unknowns(&self.unknowns, x)).unwrap_or_default()
        );
        Ok(())
    }
}

/// Runs `solver` from `x0` for at most `max_iter` iterations, traced if asked.
fn execute<'a, S: argmin::core::Solver<Saddle<'a>, solvers::SaddleState>>(
    problem: &'a SaddleProblem,
    solver: S,
    x0: Vec<f64>,
    max_iter: u64,
    trace: Option<IterationTrace>,
) -> Result<(solvers::SaddleState, S), String> {
    let mut executor = Executor::new(Saddle(problem), solver).configure(|s| s.param(x0).max_iters(max_iter));
    if let Some(trace) = trace {
        executor = executor.add_observer(trace, argmin::core::observers::ObserverMode::Always);
    }
    executor.run().map(|result| (result.state, result.solver)).map_err(|e| e.to_string())
}

/// Where a start ended.
enum Reached {
    /// A fixed point (the point, iterations).
    Converged(Vec<f64>, u64),
    /// Within [`solvers::JOIN_DISTANCE`] of one of the known fixed points.
    Joined,
}

/// Runs the configured solver from `start`; `known` are fixed points already reached at these
/// params, which a fixed-point iteration stops early on joining.
fn run_solver(problem: &SaddleProblem, name: &str, start: &[f64], options: &SolverOptions, known: &[Vec<f64>]) -> Result<Reached, String> {
    let mut x0 = start.to_vec();
    project(&mut x0, &problem.model);
    let trace = options.trace.then(|| IterationTrace { unknowns: problem.model.unknown_labels.clone(), start: name.to_string(), clock: std::time::Instant::now() });
    let state = match options.method {
        Method::FixedPoint => {
            let mut solver = FixedPoint::new(options.damping, options.tolerance, options.anderson);
            solver.known = known.to_vec();
            let (state, solver) = execute(problem, solver, x0, options.max_iter, trace)?;
            if solver.joined {
                return Ok(Reached::Joined);
            }
            state
        }
        Method::Newton => {
            let solver = Newton { tolerance: options.residual_tolerance * 1e-2 };
            execute(problem, solver, x0, options.max_iter.min(200), trace)?.0
        }
    };
    let state = &state;
    let iterations = state.get_iter();
    let x = state.get_param().cloned().ok_or("the solver returned no point")?;
    match state.get_termination_status() {
        TerminationStatus::Terminated(TerminationReason::SolverConverged) => Ok(Reached::Converged(x, iterations)),
        TerminationStatus::Terminated(TerminationReason::MaxItersReached) => {
            Err(format!("no convergence after {iterations} iterations (last change {:.3e})", state.get_cost()))
        }
        TerminationStatus::Terminated(TerminationReason::SolverExit(reason)) => Err(reason.clone()),
        other => Err(format!("stopped: {other:?}")),
    }
}

/// Solve from every start, collect distinct fixed points, select one.
pub fn solve_point(problem: &SaddleProblem, starts: &[(String, Vec<f64>)], options: &SolverOptions, stability: bool) -> Result<Solution, SolveError> {
    let mut fixed_points: Vec<FixedPointReport> = Vec::new();
    let mut terms_of: Vec<Vec<(String, f64)>> = Vec::new();
    let mut free_energies_for_observables = Vec::new();
    let mut failed = Vec::new();
    for (name, start) in starts {
        let known: Vec<Vec<f64>> = fixed_points.iter().map(|f| f.unknowns.clone()).collect();
        // Each start begins with empty minimiser caches: exhaustive searches keep a cached
        // minimiser on ties, so caches left by another start could steer this one.
        problem.forget_minimizers();
        let (x, iterations) = match run_solver(problem, name, start, options, &known) {
            Ok(Reached::Converged(x, iterations)) => (x, iterations),
            // A fixed point already reported.
            Ok(Reached::Joined) => continue,
            Err(reason) => {
                failed.push(FailedStart { start: name.clone(), reason });
                continue;
            }
        };
        // The solver's last sweep was exhaustive at a point within its tolerance of x: the
        // cached minimisers are the global ones, so tracking them is exact and cheaper.
        problem.set_search(Search::Tracked);
        let check = problem.gradient(&x).and_then(|g| Ok((g, problem.energy(&x)?)));
        problem.set_search(Search::Exhaustive);
        let (gradient, energy) = match check {
            Ok(found) => found,
            Err(e) => {
                failed.push(FailedStart { start: name.clone(), reason: e.message });
                continue;
            }
        };
        let scale = 1.0 + energy.total.abs();
        let (worst, residual) = gradient.iter().enumerate().fold((0, 0.0f64), |(wi, wv), (i, g)| if g.abs() > wv { (i, g.abs()) } else { (wi, wv) });
        if residual > options.residual_tolerance * scale {
            failed.push(FailedStart {
                start: name.clone(),
                reason: format!(
                    "the iteration stopped but the equation dPhi/d{} = 0 has residual {residual:.3e}",
                    problem.model.unknown_labels[worst]
                ),
            });
            continue;
        }
        // Two starts that converged to one fixed point stop up to ~tol / (1 - contraction)
        // apart; a thousand solver tolerances separates them from distinct fixed points.
        let same = (1e3 * options.tolerance).max(1e-6);
        let duplicate = fixed_points.iter().any(|f| solvers::relatively_close(&f.unknowns, &x, same));
        if duplicate {
            continue;
        }
        // The last sweep was exhaustive and tracking since sets no gaps: every node's basin
        // gap is the one at x.
        let near_switch = problem.near_switch_fraction(NEAR_SWITCH_GAP);
        // Still at x with the global minimisers cached: observables that read the free energy
        // get it on every scramble now, tracked.
        problem.set_search(Search::Tracked);
        let for_observables = problem.free_energy_for_observables(&x, energy.total);
        problem.set_search(Search::Exhaustive);
        let free_energy_for_observables = match for_observables {
            Ok(found) => found,
            Err(e) => {
                failed.push(FailedStart { start: name.clone(), reason: e.message });
                continue;
            }
        };
        let (radius, stable) = if stability && !problem.orders.is_empty() {
            match solvers::iteration_spectral_radius(problem, &x) {
                Ok(r) => (Some(r), Some(r < 1.0)),
                Err(_) => (None, None),
            }
        } else {
            (None, None)
        };
        terms_of.push(energy.terms);
        free_energies_for_observables.push(free_energy_for_observables);
        fixed_points.push(FixedPointReport {
            start: name.clone(),
            unknowns: x,
            free_energy: energy.total,
            iterations,
            residual,
            iteration_spectral_radius: radius,
            stable,
            near_switch,
        });
    }
    if fixed_points.is_empty() {
        let reasons: Vec<String> = failed.iter().map(|f| format!("  start `{}`: {}", f.start, f.reason)).collect();
        return Err(SolveError::NotConverged(reasons.join("\n")));
    }
    let better = |a: f64, b: f64| match problem.model.objective {
        Objective::Energy => a < b - 1e-12 * (1.0 + b.abs()),
        Objective::FreeEntropy => a > b + 1e-12 * (1.0 + b.abs()),
    };
    let mut selected = 0;
    for (i, f) in fixed_points.iter().enumerate() {
        if better(f.free_energy, fixed_points[selected].free_energy) {
            selected = i;
        }
    }
    let terms = terms_of.swap_remove(selected);
    let free_energy = free_energies_for_observables.swap_remove(selected);
    let selected = fixed_points[selected].clone();
    let evaluation = |e: crate::eval::EvalError| SolveError::Evaluation(e.message);
    let (observables, per_scramble) = problem.observables_with_scrambles(&selected.unknowns, free_energy.as_ref()).map_err(evaluation)?;
    let integration_error = integration_error(&observables, &per_scramble);
    let solution_error = if options.solution_error { solution_error(problem, &selected, &observables, options)? } else { Vec::new() };
    let solver_tolerance = match options.method {
        Method::FixedPoint => options.tolerance,
        Method::Newton => options.residual_tolerance,
    };
    Ok(Solution { selected, fixed_points, failed, terms, observables, integration_error, solution_error, solver_tolerance })
}

/// Integration error of the solution: the selected fixed point re-solved (warm) on each
/// scramble of the free energy's quasi-Monte-Carlo rules alone, the observables evaluated with
/// the full rules at each, and their standard error of the mean over scrambles.
fn solution_error(
    problem: &SaddleProblem,
    selected: &FixedPointReport,
    observables: &[(String, Shape, Vec<f64>)],
    options: &SolverOptions,
) -> Result<Vec<(String, f64)>, SolveError> {
    let groups = problem.energy_scramble_groups();
    if groups <= 1 {
        return Ok(Vec::new());
    }
    let mut per_scramble = Vec::with_capacity(groups);
    for group in 0..groups {
        let restricted = problem.restricted_to_scramble(group);
        let name = format!("{} on scramble {}", selected.start, group + 1);
        let x = match run_solver(&restricted, &name, &selected.unknowns, options, &[]) {
            Ok(Reached::Converged(x, _)) => x,
            // No fixed points are known to this re-solve, so it cannot join one.
            Ok(Reached::Joined) => return Err(SolveError::Evaluation("solution error: the re-solve joined another fixed point".into())),
            Err(reason) => return Err(SolveError::Evaluation(format!("solution error: the re-solve on scramble {} failed: {reason}", group + 1))),
        };
        per_scramble.push(problem.observables(&x).map_err(|e| SolveError::Evaluation(e.message))?);
    }
    Ok(integration_error(observables, &per_scramble))
}

/// Standard error of the mean over scrambles, per scalar observable entry.
fn integration_error(
    observables: &[(String, Shape, Vec<f64>)],
    per_scramble: &[Vec<(String, Shape, Vec<f64>)>],
) -> Vec<(String, f64)> {
    if per_scramble.len() < 2 {
        return Vec::new();
    }
    let s = per_scramble.len() as f64;
    observables
        .iter()
        .enumerate()
        .map(|(k, (name, _, values))| {
            let worst = (0..values.len())
                .map(|e| {
                    let samples: Vec<f64> = per_scramble.iter().map(|o| o[k].2[e]).collect();
                    let mean = samples.iter().sum::<f64>() / s;
                    let variance = samples.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (s - 1.0);
                    (variance / s).sqrt()
                })
                .fold(0.0, f64::max);
            (name.clone(), worst)
        })
        .collect()
}
