//! Simulations described by a model file's `simulate { }` section: the per-sample loss is a
//! lowered program over the fields of one sample (evaluated in any num-dual type, so the
//! training gradients come from the same automatic differentiation as the theory), and the
//! reports are programs over the measured overlaps.

use num_dual::DualNum;
use serde::{Deserialize, Deserializer, Serialize};

use super::{run_chained_seed, run_seed, ColumnBlock, InitKind, NamedInit, Prior, SeedResult, SequenceLoss, SimError, SimSpec};
use crate::eval::tape::{run_plain, RefArith};
use crate::types::simulation::{InitSpec, PriorSpec, SimulationSpec};
use crate::types::PlainProgram;

/// The per-sample loss of a model file.
pub struct ProgramLoss<'a> {
    spec: &'a SimulationSpec,
}

impl<'a> ProgramLoss<'a> {
    pub fn new(spec: &'a SimulationSpec) -> Self {
        ProgramLoss { spec }
    }
}

impl SequenceLoss for ProgramLoss<'_> {
    fn tokens(&self) -> usize {
        self.spec.tokens
    }
    fn noise_dim(&self) -> usize {
        self.spec.noise
    }
    fn loss<D: DualNum<Primitive = f64> + Copy + RefArith>(&self, student: &[D], teacher: &[f64], noise: &[f64]) -> D {
        run_loss(&self.spec.loss, student, teacher, noise)
    }
    fn test_loss(&self, student: &[f64], teacher: &[f64]) -> f64 {
        run_loss(&self.spec.test_loss, student, teacher, &[])
    }
}

/// One sample's loss; noise slots not given stay 0 (the clean test loss).
fn run_loss<D: DualNum<Primitive = f64> + Copy + RefArith>(program: &PlainProgram, student: &[D], teacher: &[f64], noise: &[f64]) -> D {
    let mut registers = vec![D::from(0.0); program.program.slot_count];
    for (slot, value) in program.inputs[0].iter().zip(student) {
        registers[*slot] = *value;
    }
    for (slot, value) in program.inputs[1].iter().zip(teacher) {
        registers[*slot] = D::from(*value);
    }
    for (slot, value) in program.inputs[2].iter().zip(noise) {
        registers[*slot] = D::from(*value);
    }
    match crate::eval::tape::run_plain_any(&program.program.instrs, &mut registers) {
        Ok(()) => registers[program.outputs[0].1[0]],
        // A failed evaluation makes the run non-finite, which the trainer reports.
        Err(_) => D::from(f64::NAN),
    }
}

/// The engine's spec for dimension `d`.
pub fn engine_spec(spec: &SimulationSpec, dimension: usize) -> SimSpec {
    let prior = match spec.prior {
        PriorSpec::Gaussian => Prior::Gaussian,
        PriorSpec::Rademacher => Prior::Rademacher,
        PriorSpec::GaussBernoulli(density) => Prior::GaussBernoulli { density },
    };
    let chained_teacher = spec.chain.as_ref().map(|c| c.1.teacher).unwrap_or(0);
    let inits = spec
        .inits
        .iter()
        .map(|(name, init)| {
            let kind = match init {
                // Align each trainable column with one of this stage's own teacher columns.
                InitSpec::Teacher { noise } => InitKind::Teacher {
                    columns: (0..spec.student_columns).map(|j| chained_teacher + j % spec.teacher_columns).collect(),
                    noise: *noise,
                },
                InitSpec::Random { scale } => InitKind::Random { scale: *scale },
                InitSpec::Zero => InitKind::Zero,
                InitSpec::Lora { scale } => InitKind::Lora { scale: *scale },
            };
            NamedInit::new(name.clone(), kind)
        })
        .collect();
    SimSpec {
        tokens: spec.tokens,
        dimension,
        alpha: spec.samples_per_dimension,
        test_samples: spec.test_samples,
        teacher: vec![ColumnBlock::Drawn { prior, columns: spec.teacher_columns }],
        frozen: None,
        trainable: spec.student_columns,
        ridge: spec.ridge,
        inits,
        lbfgs: Default::default(),
    }
}

/// The reports of one trained run, plus its bookkeeping.
#[derive(Debug, Clone, Serialize)]
pub struct RunReports {
    pub init: String,
    pub values: Vec<f64>,
    pub objective: f64,
    pub converged: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedReports {
    pub seed: u64,
    /// The run with the lowest training objective (the global minimum the theory describes).
    pub best: RunReports,
    pub runs: Vec<RunReports>,
    pub objective_spread: f64,
}

fn matrix_entries(rows: &[Vec<f64>], count: usize) -> Vec<f64> {
    let mut values: Vec<f64> = rows.iter().flatten().copied().collect();
    values.resize(count, 0.0);
    values
}

fn evaluate_reports(spec: &SimulationSpec, seed: &SeedResult, run: &super::InitReport, samples: usize) -> Vec<f64> {
    let program = &spec.reports;
    let mut registers = vec![0.0f64; program.program.slot_count];
    let observables = &run.observables;
    let inputs: [Vec<f64>; 6] = [
        vec![observables.test_error],
        vec![run.objective / samples.max(1) as f64],
        matrix_entries(&observables.overlap_with_teacher, program.inputs[2].len()),
        matrix_entries(&observables.self_overlap, program.inputs[3].len()),
        matrix_entries(&seed.teacher_overlap, program.inputs[4].len()),
        matrix_entries(&observables.overlap_with_frozen, program.inputs[5].len()),
    ];
    for (slots, values) in program.inputs.iter().zip(&inputs) {
        for (slot, value) in slots.iter().zip(values) {
            registers[*slot] = *value;
        }
    }
    if run_plain(&program.program.instrs, &mut registers).is_err() {
        return vec![f64::NAN; program.outputs.len()];
    }
    program.outputs.iter().map(|(_, slots)| registers[slots[0]]).collect()
}

/// Simulate one seed: the chained stage first if there is one, then this stage on fresh data.
pub fn simulate_seed(spec: &SimulationSpec, chained: Option<&SimulationSpec>, dimension: usize, seed: u64) -> Result<SeedReports, SimError> {
    let engine = engine_spec(spec, dimension);
    let loss = ProgramLoss::new(spec);
    let result = match chained {
        None => run_seed(&engine, &loss, seed)?,
        Some(first) => {
            let first_engine = engine_spec(first, dimension);
            let first_loss = ProgramLoss::new(first);
            run_chained_seed(&first_engine, &first_loss, &engine, &loss, seed)?.1
        }
    };
    let samples = engine.training_samples();
    let runs: Vec<RunReports> = result
        .runs
        .iter()
        .map(|run| RunReports {
            init: run.name.clone(),
            values: evaluate_reports(spec, &result, run, samples),
            objective: run.objective,
            converged: run.converged,
        })
        .collect();
    Ok(SeedReports { seed, best: runs[result.best_index].clone(), runs, objective_spread: result.objective_spread })
}

/// Mean, standard error and count over seeds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Estimate {
    #[serde(deserialize_with = "number_or_nan")]
    pub mean: f64,
    #[serde(deserialize_with = "number_or_nan")]
    pub sem: f64,
    pub n: usize,
}

/// JSON writes a NaN (no finite value over the seeds) as `null`; it reads back as NaN.
fn number_or_nan<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

impl Estimate {
    pub fn of(values: &[f64]) -> Estimate {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let summary = super::summarise(&finite);
        Estimate { mean: summary.mean, sem: summary.sem, n: summary.n }
    }
}

/// Seed averages of one simulated point, in the shape `toolkit simulate --format json` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimulationResult {
    pub model: String,
    pub params: indexmap::IndexMap<String, f64>,
    pub dimension: usize,
    pub seeds: usize,
    /// The first seed; the seeds are `first_seed..first_seed + seeds` (0 in files written
    /// before it was recorded).
    #[serde(default)]
    pub first_seed: u64,
    /// Reports of the best run (lowest training objective over initialisations) per seed.
    pub observables: indexmap::IndexMap<String, Estimate>,
    /// The same reports for each initialisation separately.
    pub inits: indexmap::IndexMap<String, indexmap::IndexMap<String, Estimate>>,
    /// Spread (max - min) of the training objective across initialisations.
    pub objective_spread: Estimate,
    /// Runs whose gradient norm did not fall below the tolerance.
    pub unconverged_runs: usize,
}

pub fn summarise_seeds(spec: &SimulationSpec, model: String, params: indexmap::IndexMap<String, f64>, dimension: usize, seeds: &[SeedReports]) -> SimulationResult {
    let column = |pick: &dyn Fn(&SeedReports) -> Option<f64>| -> Estimate {
        Estimate::of(&seeds.iter().filter_map(pick).collect::<Vec<f64>>())
    };
    let observables = spec
        .report_names
        .iter()
        .enumerate()
        .map(|(k, name)| (name.clone(), column(&|s: &SeedReports| Some(s.best.values[k]))))
        .collect();
    let inits = spec
        .inits
        .iter()
        .map(|(init, _)| {
            let reports = spec
                .report_names
                .iter()
                .enumerate()
                .map(|(k, name)| {
                    (name.clone(), column(&|s: &SeedReports| s.runs.iter().find(|r| &r.init == init).map(|r| r.values[k])))
                })
                .collect();
            (init.clone(), reports)
        })
        .collect();
    SimulationResult {
        model,
        params,
        dimension,
        seeds: seeds.len(),
        first_seed: seeds.iter().map(|s| s.seed).min().unwrap_or(0),
        observables,
        inits,
        objective_spread: column(&|s: &SeedReports| Some(s.objective_spread)),
        unconverged_runs: seeds.iter().flat_map(|s| &s.runs).filter(|r| !r.converged).count(),
    }
}
