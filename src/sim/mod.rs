//! Finite-dimensional simulation engine for sequence multi-index models.
//!
//! A sample is a sequence of `L` tokens `x_l ~ N(0, I_d)`; every weight column `w` gives the
//! per-token local field `h_l = w·x_l / sqrt(d)`. Three kinds of columns enter a model:
//! teacher columns (drawn from a prior or supplied), frozen student columns (supplied, not
//! trained) and trainable student columns. The per-sample loss is user code implementing
//! [`SequenceLoss`]; this module draws teachers and data, minimises the regularised empirical
//! risk with L-BFGS from several initialisations, and measures the observables that the
//! asymptotic theory predicts (test error and overlaps).
//!
//! Training objective (a SUM over samples, not a mean):
//! `E(W) = sum_mu loss(fields_mu(W), teacher_fields_mu, noise_mu) + ridge/2 ||W||_F^2`.
//!
//! Layout of the submodules:
//! - [`loss`]: the [`SequenceLoss`] trait and forward-mode differentiation of one sample;
//! - [`spec`]: the experiment description [`SimSpec`] and its validation;
//! - [`data`]: seeded random streams, teacher columns and [`Dataset`]s;
//! - [`objective`]: the batched objective and its gradient with respect to the weights;
//! - [`mod@train`]: L-BFGS training and initialisations;
//! - [`mod@observe`]: test error, overlap matrices and their sign-invariant forms;
//! - [`run`]: whole seeds, parallel seed sweeps and multi-stage chaining;
//! - [`experiment`]: simulations described by a model file's `simulate { }` section.

pub mod data;
pub mod experiment;
pub mod loss;
pub mod objective;
pub mod observe;
pub mod run;
pub mod spec;
pub mod train;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use data::{draw_teacher, seed_stream, Dataset, StreamPurpose};
pub use loss::SequenceLoss;
pub use objective::Objective;
pub use observe::{cosine, mean_test_loss, observe, overlap, Observables};
pub use run::{
    chain_stage, run_chained_seed, run_seed, run_seed_in_stage, run_seeds, run_seeds_with,
    InitReport, SeedResult,
};
pub use spec::{ColumnBlock, InitKind, LbfgsOptions, NamedInit, Prior, SimSpec};
pub use train::{initial_weights, train, train_from, TrainResult};

/// Everything that can go wrong in a simulation.
#[derive(Debug, Error)]
pub enum SimError {
    /// The experiment description is inconsistent (message says what and why).
    #[error("invalid simulation spec: {0}")]
    InvalidSpec(String),
    /// A supplied matrix or slice has the wrong shape.
    #[error(
        "{what} has shape {found_rows}x{found_cols}, expected {expected_rows}x{expected_cols}"
    )]
    Shape {
        what: &'static str,
        expected_rows: usize,
        expected_cols: usize,
        found_rows: usize,
        found_cols: usize,
    },
    /// The optimiser refused to start or stopped with an error.
    #[error("L-BFGS failed: {0}")]
    Optimiser(String),
    /// No initialisation of a seed reached a finite training objective.
    #[error("seed {seed}: every initialisation ended with a non-finite training objective")]
    NonFinite { seed: u64 },
}

/// Mean and standard error of the mean of a sample of observations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mean: f64,
    /// Sample standard deviation (n - 1 denominator) divided by sqrt(n); NaN when n < 2.
    pub sem: f64,
    pub n: usize,
}

/// Mean and standard error of `values` (NaN mean for an empty slice, NaN sem when n < 2).
pub fn summarise(values: &[f64]) -> Summary {
    let n = values.len();
    if n == 0 {
        return Summary {
            mean: f64::NAN,
            sem: f64::NAN,
            n,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Summary {
            mean,
            sem: f64::NAN,
            n,
        };
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    Summary {
        mean,
        sem: (variance / n as f64).sqrt(),
        n,
    }
}
