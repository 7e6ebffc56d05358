//! The description of one simulated experiment ([`SimSpec`]): sizes, column kinds, ridge,
//! initialisations and L-BFGS options, with validation against a loss.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::{SequenceLoss, SimError};

/// Prior of the i.i.d. entries of a drawn teacher column.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Prior {
    /// N(0, 1) entries.
    Gaussian,
    /// +-1 with probability 1/2 each.
    Rademacher,
    /// 0 with probability `1 - density`, else N(0, 1/density) (unit second moment).
    GaussBernoulli { density: f64 },
}

/// A block of consecutive teacher columns.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnBlock {
    /// `columns` columns drawn i.i.d. from `prior` for every seed.
    Drawn { prior: Prior, columns: usize },
    /// A fixed `d x c` matrix, e.g. a teacher or trained weights of a previous stage.
    Supplied(DMatrix<f64>),
}

impl ColumnBlock {
    /// Number of columns in the block.
    pub fn columns(&self) -> usize {
        match self {
            ColumnBlock::Drawn { columns, .. } => *columns,
            ColumnBlock::Supplied(matrix) => matrix.ncols(),
        }
    }
}

/// How the trainable columns start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InitKind {
    /// I.i.d. N(0, scale^2) entries.
    Random { scale: f64 },
    /// Trainable column `j` starts at teacher column `columns[j]` plus i.i.d. N(0, noise^2)
    /// entries (`columns.len()` must equal the number of trainable columns).
    Teacher { columns: Vec<usize>, noise: f64 },
    /// All zeros.
    Zero,
    /// LoRA: with `k = 2r` trainable columns read as `(u_1..u_r, v_1..v_r)`, the `u` half starts
    /// at zero and the `v` half at i.i.d. N(0, scale^2) entries.
    Lora { scale: f64 },
}

/// An initialisation with the name under which its run is reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedInit {
    pub name: String,
    pub kind: InitKind,
}

impl NamedInit {
    pub fn new(name: impl Into<String>, kind: InitKind) -> Self {
        Self {
            name: name.into(),
            kind,
        }
    }
}

/// L-BFGS (More-Thuente line search) options.
///
/// Besides `max_iters` and `grad_tol`, argmin's L-BFGS also stops when one iteration changes the
/// objective by less than machine epsilon (no further progress possible in floating point);
/// [`super::TrainResult::converged`] always reports the gradient-norm test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LbfgsOptions {
    pub max_iters: u64,
    /// A run counts as converged when the Euclidean norm of the gradient of the (summed)
    /// objective falls below this.
    pub grad_tol: f64,
    /// Number of stored correction pairs.
    pub memory: usize,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        Self {
            max_iters: 2000,
            grad_tol: 1e-6,
            memory: 10,
        }
    }
}

/// One simulated experiment.
///
/// The training objective is a SUM over the `n = floor(alpha d)` training samples plus the
/// ridge term: `sum_mu loss_mu + ridge/2 ||W||_F^2`, so `ridge` is on the scale of one sample's
/// loss (the usual high-dimensional convention).
#[derive(Debug, Clone, PartialEq)]
pub struct SimSpec {
    /// Tokens per sample `L`; must equal the loss's [`SequenceLoss::tokens`].
    pub tokens: usize,
    /// Input dimension `d`.
    pub dimension: usize,
    /// Sample ratio: `n = floor(alpha d)` training samples.
    pub alpha: f64,
    /// Fresh test samples; `None` means `max(4000, 10 d)`.
    pub test_samples: Option<usize>,
    /// Teacher columns, concatenated in order.
    pub teacher: Vec<ColumnBlock>,
    /// Frozen student columns (`d x k_f`), listed before the trainable ones in the loss.
    pub frozen: Option<DMatrix<f64>>,
    /// Number of trainable columns `k`.
    pub trainable: usize,
    /// Ridge coefficient `lambda` of `lambda/2 ||W||_F^2`.
    pub ridge: f64,
    /// Initialisations tried for every seed; the lowest training objective is the "best" run.
    pub inits: Vec<NamedInit>,
    pub lbfgs: LbfgsOptions,
}

impl SimSpec {
    /// A spec with one Gaussian teacher column, no frozen columns, no ridge and a single
    /// unit-scale random initialisation.
    pub fn new(tokens: usize, dimension: usize, alpha: f64, trainable: usize) -> Self {
        Self {
            tokens,
            dimension,
            alpha,
            test_samples: None,
            teacher: vec![ColumnBlock::Drawn {
                prior: Prior::Gaussian,
                columns: 1,
            }],
            frozen: None,
            trainable,
            ridge: 0.0,
            inits: vec![NamedInit::new("random", InitKind::Random { scale: 1.0 })],
            lbfgs: LbfgsOptions::default(),
        }
    }

    /// Number of training samples `floor(alpha d)`.
    pub fn training_samples(&self) -> usize {
        // The small epsilon keeps e.g. alpha = 0.7, d = 10 from rounding down to 6.
        (self.alpha * self.dimension as f64 * (1.0 + 1e-12)).floor() as usize
    }

    /// Number of fresh test samples.
    pub fn test_sample_count(&self) -> usize {
        self.test_samples
            .unwrap_or_else(|| 4000.max(10 * self.dimension))
    }

    /// Total number of teacher columns `k_t`.
    pub fn teacher_width(&self) -> usize {
        self.teacher.iter().map(ColumnBlock::columns).sum()
    }

    /// Number of frozen columns `k_f`.
    pub fn frozen_width(&self) -> usize {
        self.frozen.as_ref().map_or(0, DMatrix::ncols)
    }

    /// Checks the spec for internal consistency and against `loss`.
    pub fn validate<S: SequenceLoss>(&self, loss: &S) -> Result<(), SimError> {
        let invalid = |message: String| Err(SimError::InvalidSpec(message));
        if self.tokens == 0 || self.tokens != loss.tokens() {
            return invalid(format!(
                "spec has {} tokens per sample but the loss expects {}",
                self.tokens,
                loss.tokens()
            ));
        }
        if self.dimension == 0 {
            return invalid("dimension d must be positive".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) || self.training_samples() == 0 {
            return invalid(format!("alpha = {} gives no training samples", self.alpha));
        }
        if self.test_sample_count() == 0 {
            return invalid("at least one test sample is needed".into());
        }
        if self.trainable == 0 {
            return invalid("at least one trainable column is needed".into());
        }
        if !(self.ridge.is_finite() && self.ridge >= 0.0) {
            return invalid(format!(
                "ridge must be finite and non-negative, got {}",
                self.ridge
            ));
        }
        if self.inits.is_empty() {
            return invalid("at least one initialisation is needed".into());
        }
        if self.lbfgs.memory == 0 || self.lbfgs.grad_tol.is_nan() || self.lbfgs.grad_tol < 0.0 {
            return invalid(
                "L-BFGS needs memory >= 1 and a non-negative gradient tolerance".into(),
            );
        }
        for block in &self.teacher {
            match block {
                ColumnBlock::Supplied(matrix) => {
                    check_rows("supplied teacher block", matrix, self.dimension)?
                }
                ColumnBlock::Drawn {
                    prior: Prior::GaussBernoulli { density },
                    ..
                } if !(*density > 0.0 && *density <= 1.0) => {
                    return invalid(format!(
                        "Gauss-Bernoulli density must be in (0, 1], got {density}"
                    ));
                }
                ColumnBlock::Drawn { .. } => {}
            }
        }
        if let Some(frozen) = &self.frozen {
            check_rows("frozen columns", frozen, self.dimension)?;
        }
        for init in &self.inits {
            self.validate_init(init)?;
        }
        Ok(())
    }

    fn validate_init(&self, init: &NamedInit) -> Result<(), SimError> {
        let invalid = |message: String| {
            Err(SimError::InvalidSpec(format!(
                "init '{}': {message}",
                init.name
            )))
        };
        match &init.kind {
            InitKind::Random { scale } | InitKind::Lora { scale } if !scale.is_finite() => {
                invalid(format!("scale must be finite, got {scale}"))
            }
            InitKind::Lora { .. } if !self.trainable.is_multiple_of(2) => invalid(format!(
                "LoRA init needs an even number of trainable columns (u, v), got {}",
                self.trainable
            )),
            InitKind::Teacher { columns, .. } if columns.len() != self.trainable => {
                invalid(format!(
                    "lists {} teacher columns for {} trainable columns",
                    columns.len(),
                    self.trainable
                ))
            }
            InitKind::Teacher { columns, .. }
                if columns.iter().any(|&c| c >= self.teacher_width()) =>
            {
                invalid(format!(
                    "teacher column out of range (k_t = {})",
                    self.teacher_width()
                ))
            }
            InitKind::Teacher { noise, .. } if !noise.is_finite() => {
                invalid(format!("noise must be finite, got {noise}"))
            }
            _ => Ok(()),
        }
    }
}

/// Errors unless `matrix` has `rows` rows.
pub(crate) fn check_rows(
    what: &'static str,
    matrix: &DMatrix<f64>,
    rows: usize,
) -> Result<(), SimError> {
    check_shape(what, matrix, rows, matrix.ncols())
}

/// Errors unless `matrix` is `rows x cols`.
pub(crate) fn check_shape(
    what: &'static str,
    matrix: &DMatrix<f64>,
    rows: usize,
    cols: usize,
) -> Result<(), SimError> {
    if matrix.shape() == (rows, cols) {
        Ok(())
    } else {
        Err(SimError::Shape {
            what,
            expected_rows: rows,
            expected_cols: cols,
            found_rows: matrix.nrows(),
            found_cols: matrix.ncols(),
        })
    }
}
