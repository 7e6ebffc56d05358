//! Whole seeds: draw the teacher, training and test data of a seed, train from every
//! initialisation, measure observables and pick the best run; parallel sweeps over seeds
//! (rayon, results in seed order, reproducible for any thread count); and chaining of stages,
//! where a stage's teacher and trained weights become the next stage's teacher and frozen
//! columns.

use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::data::{draw_teacher, seed_stream, Dataset, StreamPurpose};
use super::observe::{observe, overlap, Observables};
use super::spec::check_rows;
use super::train::train;
use super::{ColumnBlock, SequenceLoss, SimError, SimSpec};

/// Result of training from one named initialisation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitReport {
    pub name: String,
    /// Training objective (summed loss plus ridge) at the trained weights.
    pub objective: f64,
    pub grad_norm: f64,
    pub iterations: u64,
    pub converged: bool,
    pub termination: String,
    pub observables: Observables,
    /// Trained `d x k` weights (not serialised).
    #[serde(skip)]
    pub weights: DMatrix<f64>,
}

/// Everything measured for one seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedResult {
    pub seed: u64,
    /// Stage of a chained experiment (0 for a single stage).
    pub stage: u32,
    /// `rho = T^T T / d`, `k_t x k_t`.
    pub teacher_overlap: Vec<Vec<f64>>,
    /// One report per initialisation, in the order of [`SimSpec::inits`].
    pub runs: Vec<InitReport>,
    /// Index in `runs` of the lowest finite training objective.
    pub best_index: usize,
    /// Max minus min of the finite training objectives across initialisations.
    pub objective_spread: f64,
    /// The `d x k_t` teacher of this seed (not serialised).
    #[serde(skip)]
    pub teacher: DMatrix<f64>,
}

impl SeedResult {
    /// The run with the lowest training objective.
    pub fn best(&self) -> &InitReport {
        &self.runs[self.best_index]
    }

    /// The run of the initialisation called `name`.
    pub fn run(&self, name: &str) -> Option<&InitReport> {
        self.runs.iter().find(|run| run.name == name)
    }

    /// `|M_ij| / sqrt(Q_ii rho_jj)` of the best run.
    pub fn best_cosines(&self) -> Vec<Vec<f64>> {
        self.best()
            .observables
            .cosines_with_teacher(&self.teacher_overlap)
    }
}

/// Runs one seed of a single-stage experiment (stage 0).
pub fn run_seed<S: SequenceLoss>(
    spec: &SimSpec,
    loss: &S,
    seed: u64,
) -> Result<SeedResult, SimError> {
    run_seed_in_stage(spec, loss, seed, 0)
}

/// Runs one seed in stage `stage` of a chained experiment: each stage draws its teacher, data
/// and initialisations from its own random streams, so every stage sees fresh data.
pub fn run_seed_in_stage<S: SequenceLoss>(
    spec: &SimSpec,
    loss: &S,
    seed: u64,
    stage: u32,
) -> Result<SeedResult, SimError> {
    spec.validate(loss)?;
    let dimension = spec.dimension;
    let teacher = draw_teacher(
        &spec.teacher,
        dimension,
        &mut seed_stream(seed, stage, StreamPurpose::Teacher),
    )?;
    let frozen = spec
        .frozen
        .clone()
        .unwrap_or_else(|| DMatrix::zeros(dimension, 0));
    let training = Dataset::draw(
        &mut seed_stream(seed, stage, StreamPurpose::Training),
        spec.training_samples(),
        spec.tokens,
        &teacher,
        &frozen,
        loss.noise_dim(),
    )?;
    let test = Dataset::draw(
        &mut seed_stream(seed, stage, StreamPurpose::Test),
        spec.test_sample_count(),
        spec.tokens,
        &teacher,
        &frozen,
        0,
    )?;
    // Inits are independent given the data; collecting keeps their order.
    let runs = spec
        .inits
        .par_iter()
        .enumerate()
        .map(|(index, init)| {
            let mut rng = seed_stream(seed, stage, StreamPurpose::Init(index));
            let trained = train(spec, loss, &training, &teacher, &init.kind, &mut rng)?;
            let observables = observe(loss, &test, &trained.weights, &teacher, &frozen)?;
            Ok(InitReport {
                name: init.name.clone(),
                objective: trained.objective,
                grad_norm: trained.grad_norm,
                iterations: trained.iterations,
                converged: trained.converged,
                termination: trained.termination,
                observables,
                weights: trained.weights,
            })
        })
        .collect::<Result<Vec<_>, SimError>>()?;

    let finite: Vec<(usize, f64)> = runs
        .iter()
        .enumerate()
        .filter(|(_, run)| run.objective.is_finite())
        .map(|(index, run)| (index, run.objective))
        .collect();
    let best_index = finite
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|&(index, _)| index)
        .ok_or(SimError::NonFinite { seed })?;
    let highest = finite
        .iter()
        .map(|&(_, value)| value)
        .fold(f64::NEG_INFINITY, f64::max);
    let lowest = finite
        .iter()
        .map(|&(_, value)| value)
        .fold(f64::INFINITY, f64::min);

    Ok(SeedResult {
        seed,
        stage,
        teacher_overlap: overlap(&teacher, &teacher),
        runs,
        best_index,
        objective_spread: highest - lowest,
        teacher,
    })
}

/// Runs `seeds` in parallel; results come back in seed order.
pub fn run_seeds<S: SequenceLoss>(
    spec: &SimSpec,
    loss: &S,
    seeds: &[u64],
) -> Result<Vec<SeedResult>, SimError> {
    run_seeds_with(spec, loss, seeds, |_| {})
}

/// Like [`run_seeds`], calling `on_seed_done` (from a worker thread, in completion order) as
/// soon as each seed finishes, e.g. to stream results to disk or advance a progress bar.
pub fn run_seeds_with<S, F>(
    spec: &SimSpec,
    loss: &S,
    seeds: &[u64],
    on_seed_done: F,
) -> Result<Vec<SeedResult>, SimError>
where
    S: SequenceLoss,
    F: Fn(&SeedResult) + Sync,
{
    spec.validate(loss)?;
    seeds
        .par_iter()
        .map(|&seed| {
            let result = run_seed(spec, loss, seed)?;
            on_seed_done(&result);
            Ok(result)
        })
        .collect()
}

/// The spec of the next stage of a chained experiment: `next` with the previous stage's
/// teacher prepended to its teacher columns and the previous best weights prepended to its
/// frozen columns. Teacher-init column indices in `next` count the prepended columns.
///
/// Example (LoRA on top of a trained attention layer): `next` has teacher
/// `[Drawn { Gaussian, 2 }]` (u*, v*), no frozen columns and 2 trainable columns (u, v); the
/// chained spec has teacher `[W0*, u*, v*]` and frozen `[W_hat]`.
pub fn chain_stage(next: &SimSpec, previous: &SeedResult) -> Result<SimSpec, SimError> {
    check_rows("previous teacher", &previous.teacher, next.dimension)?;
    let trained = &previous.best().weights;
    check_rows("previous weights", trained, next.dimension)?;
    let mut spec = next.clone();
    spec.teacher
        .insert(0, ColumnBlock::Supplied(previous.teacher.clone()));
    spec.frozen = Some(match &next.frozen {
        None => trained.clone(),
        Some(extra) => {
            check_rows("frozen columns", extra, next.dimension)?;
            let mut both = DMatrix::zeros(next.dimension, trained.ncols() + extra.ncols());
            both.columns_mut(0, trained.ncols()).copy_from(trained);
            both.columns_mut(trained.ncols(), extra.ncols())
                .copy_from(extra);
            both
        }
    });
    Ok(spec)
}

/// Runs `seed` through stage 0 (`first`) and then stage 1 (`second` chained onto the stage-0
/// result with [`chain_stage`], fresh data).
pub fn run_chained_seed<S0: SequenceLoss, S1: SequenceLoss>(
    first: &SimSpec,
    first_loss: &S0,
    second: &SimSpec,
    second_loss: &S1,
    seed: u64,
) -> Result<(SeedResult, SeedResult), SimError> {
    let stage0 = run_seed_in_stage(first, first_loss, seed, 0)?;
    let chained = chain_stage(second, &stage0)?;
    let stage1 = run_seed_in_stage(&chained, second_loss, seed, 1)?;
    Ok((stage0, stage1))
}
