//! Training: initial weights for each [`InitKind`] and L-BFGS minimisation (More-Thuente line
//! search, argmin over `Vec<f64>`) of the [`Objective`].

use std::cell::RefCell;

use argmin::core::{CostFunction, Error as ArgminError, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use nalgebra::DMatrix;
use rand::Rng;
use rand_distr::StandardNormal;

use super::spec::check_shape;
use super::{Dataset, InitKind, Objective, SequenceLoss, SimError, SimSpec};

/// Outcome of one L-BFGS run.
#[derive(Debug, Clone)]
pub struct TrainResult {
    /// Trained `d x k` weights (the lowest-objective iterate).
    pub weights: DMatrix<f64>,
    /// Training objective (summed loss plus ridge) at `weights`.
    pub objective: f64,
    /// Euclidean norm of the objective's gradient at `weights`.
    pub grad_norm: f64,
    pub iterations: u64,
    /// `grad_norm < grad_tol`.
    pub converged: bool,
    /// Why the optimiser stopped, as reported by argmin.
    pub termination: String,
}

/// The `d x k` starting weights for `init`, drawing any randomness from `rng`.
pub fn initial_weights<R: Rng + ?Sized>(
    spec: &SimSpec,
    init: &InitKind,
    teacher: &DMatrix<f64>,
    rng: &mut R,
) -> Result<DMatrix<f64>, SimError> {
    let (dimension, trainable) = (spec.dimension, spec.trainable);
    let mut gaussian = |scale: f64| scale * rng.sample::<f64, _>(StandardNormal);
    match init {
        InitKind::Random { scale } => Ok(DMatrix::from_fn(dimension, trainable, |_, _| {
            gaussian(*scale)
        })),
        InitKind::Zero => Ok(DMatrix::zeros(dimension, trainable)),
        InitKind::Lora { scale } => {
            if !trainable.is_multiple_of(2) {
                return Err(SimError::InvalidSpec(format!(
                    "LoRA init needs an even number of trainable columns, got {trainable}"
                )));
            }
            let half = trainable / 2;
            Ok(DMatrix::from_fn(dimension, trainable, |_, column| {
                if column < half {
                    0.0
                } else {
                    gaussian(*scale)
                }
            }))
        }
        InitKind::Teacher { columns, noise } => {
            if columns.len() != trainable {
                return Err(SimError::InvalidSpec(format!(
                    "teacher init lists {} columns for {trainable} trainable columns",
                    columns.len()
                )));
            }
            check_shape("teacher", teacher, dimension, teacher.ncols())?;
            if let Some(&bad) = columns.iter().find(|&&c| c >= teacher.ncols()) {
                return Err(SimError::InvalidSpec(format!(
                    "teacher init column {bad} out of range (k_t = {})",
                    teacher.ncols()
                )));
            }
            Ok(DMatrix::from_fn(dimension, trainable, |row, column| {
                teacher[(row, columns[column])] + gaussian(*noise)
            }))
        }
    }
}

/// Draws the initial weights for `init` and trains from them.
pub fn train<S: SequenceLoss, R: Rng + ?Sized>(
    spec: &SimSpec,
    loss: &S,
    data: &Dataset,
    teacher: &DMatrix<f64>,
    init: &InitKind,
    rng: &mut R,
) -> Result<TrainResult, SimError> {
    let initial = initial_weights(spec, init, teacher, rng)?;
    train_from(spec, loss, data, initial)
}

/// Minimises the objective of `spec` (ridge, number of columns, L-BFGS options) on `data`
/// starting from `initial` (`d x k`).
pub fn train_from<S: SequenceLoss>(
    spec: &SimSpec,
    loss: &S,
    data: &Dataset,
    initial: DMatrix<f64>,
) -> Result<TrainResult, SimError> {
    check_shape(
        "initial weights",
        &initial,
        data.dimension(),
        spec.trainable,
    )?;
    let objective = Objective::new(loss, data, spec.trainable, spec.ridge)?;
    let problem = CachedObjective {
        objective: &objective,
        last: RefCell::new(None),
    };
    let optimiser_error = |error: ArgminError| SimError::Optimiser(error.to_string());
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), spec.lbfgs.memory)
        .with_tolerance_grad(spec.lbfgs.grad_tol)
        .map_err(optimiser_error)?;
    let start: Vec<f64> = initial.as_slice().to_vec();
    // L-BFGS cannot start from a non-finite point: report such a run instead of failing the seed.
    let mut start_gradient = vec![0.0; start.len()];
    let start_value = objective.value_and_gradient_into(&start, &mut start_gradient);
    if !is_finite_evaluation(start_value, &start_gradient) {
        return Ok(TrainResult {
            weights: initial,
            objective: start_value,
            grad_norm: euclidean_norm(&start_gradient),
            iterations: 0,
            converged: false,
            termination: "non-finite objective or gradient at the initial weights".into(),
        });
    }
    let outcome = Executor::new(problem, solver)
        .configure(|state| state.param(start).max_iters(spec.lbfgs.max_iters))
        .timer(false)
        .run()
        .map_err(optimiser_error)?;
    let state = outcome.state();
    let best = state
        .get_best_param()
        .or_else(|| state.get_param())
        .ok_or_else(|| SimError::Optimiser("no parameter vector after the run".into()))?;
    let iterations = state.get_iter();
    let termination = state.get_termination_reason().map_or_else(
        || "not terminated".to_string(),
        |reason| reason.text().to_string(),
    );
    let mut gradient = vec![0.0; best.len()];
    let value = objective.value_and_gradient_into(best, &mut gradient);
    let grad_norm = euclidean_norm(&gradient);
    Ok(TrainResult {
        weights: DMatrix::from_column_slice(data.dimension(), spec.trainable, best),
        objective: value,
        grad_norm,
        iterations,
        converged: grad_norm < spec.lbfgs.grad_tol,
        termination,
    })
}

fn euclidean_norm(values: &[f64]) -> f64 {
    values.iter().map(|v| v * v).sum::<f64>().sqrt()
}

fn is_finite_evaluation(value: f64, gradient: &[f64]) -> bool {
    value.is_finite() && gradient.iter().all(|g| g.is_finite())
}

/// The objective as an argmin problem. The More-Thuente line search asks for the cost and then
/// the gradient at the same point, and L-BFGS asks again for the accepted point's gradient;
/// caching the last evaluation makes each of those one fused sweep over the data.
struct CachedObjective<'o, 'a, S: SequenceLoss> {
    objective: &'o Objective<'a, S>,
    last: RefCell<Option<Evaluation>>,
}

struct Evaluation {
    weights: Vec<f64>,
    value: f64,
    gradient: Vec<f64>,
}

impl<S: SequenceLoss> CachedObjective<'_, '_, S> {
    fn evaluate<T>(
        &self,
        weights: &[f64],
        pick: impl FnOnce(&Evaluation) -> T,
    ) -> Result<T, ArgminError> {
        if weights.len() != self.objective.parameter_count() {
            return Err(ArgminError::msg(format!(
                "parameter vector of length {}, expected {}",
                weights.len(),
                self.objective.parameter_count()
            )));
        }
        let mut last = self.last.borrow_mut();
        let cached = last
            .as_ref()
            .is_some_and(|evaluation| evaluation.weights == weights);
        if !cached {
            let mut gradient = vec![0.0; weights.len()];
            let value = self
                .objective
                .value_and_gradient_into(weights, &mut gradient);
            // The More-Thuente interpolation breaks down on NaN/inf; an error ends the line
            // search, and L-BFGS then stops at the last finite iterate.
            if !is_finite_evaluation(value, &gradient) {
                return Err(ArgminError::msg("non-finite objective or gradient"));
            }
            *last = Some(Evaluation {
                weights: weights.to_vec(),
                value,
                gradient,
            });
        }
        match last.as_ref() {
            Some(evaluation) => Ok(pick(evaluation)),
            None => Err(ArgminError::msg("objective cache unexpectedly empty")),
        }
    }
}

impl<S: SequenceLoss> CostFunction for CachedObjective<'_, '_, S> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, weights: &Vec<f64>) -> Result<f64, ArgminError> {
        self.evaluate(weights, |evaluation| evaluation.value)
    }
}

impl<S: SequenceLoss> Gradient for CachedObjective<'_, '_, S> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, weights: &Vec<f64>) -> Result<Vec<f64>, ArgminError> {
        self.evaluate(weights, |evaluation| evaluation.gradient.clone())
    }
}
