//! Randomness and data: the seeded random streams of a seed, teacher columns drawn from their
//! priors, and [`Dataset`]s of token sequences with their precomputed teacher and frozen fields.
//!
//! Every purpose (teacher, training data, test data, each initialisation) of every stage draws
//! from its own ChaCha8 stream of the seed, so adding an initialisation or running inits in
//! parallel never changes the data, and results are reproducible bit for bit.

use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::spec::check_rows;
use super::{ColumnBlock, Prior, SimError};

/// What a random stream of a seed is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamPurpose {
    Teacher,
    Training,
    Test,
    /// The initialisation with this index in [`super::SimSpec::inits`].
    Init(usize),
}

/// The random stream of `seed` for `purpose` in stage `stage` of a chained experiment.
pub fn seed_stream(seed: u64, stage: u32, purpose: StreamPurpose) -> ChaCha8Rng {
    let purpose_code = match purpose {
        StreamPurpose::Teacher => 0,
        StreamPurpose::Training => 1,
        StreamPurpose::Test => 2,
        StreamPurpose::Init(index) => 3 + index as u64,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((u64::from(stage) << 32) | (purpose_code & 0xffff_ffff));
    rng
}

/// One draw from `prior`.
fn sample_prior<R: Rng + ?Sized>(prior: Prior, rng: &mut R) -> f64 {
    match prior {
        Prior::Gaussian => rng.sample(StandardNormal),
        Prior::Rademacher => {
            if rng.random_bool(0.5) {
                1.0
            } else {
                -1.0
            }
        }
        Prior::GaussBernoulli { density } => {
            // Draw both numbers always so the stream position does not depend on the outcome.
            let active = rng.random::<f64>() < density;
            let gaussian: f64 = rng.sample(StandardNormal);
            if active {
                gaussian / density.sqrt()
            } else {
                0.0
            }
        }
    }
}

/// The `d x k_t` teacher matrix: drawn blocks from `rng`, supplied blocks copied.
pub fn draw_teacher<R: Rng + ?Sized>(
    blocks: &[ColumnBlock],
    dimension: usize,
    rng: &mut R,
) -> Result<DMatrix<f64>, SimError> {
    let width = blocks.iter().map(ColumnBlock::columns).sum();
    let mut teacher = DMatrix::zeros(dimension, width);
    let mut next_column = 0;
    for block in blocks {
        match block {
            ColumnBlock::Drawn { prior, columns } => {
                for column in next_column..next_column + columns {
                    for row in 0..dimension {
                        teacher[(row, column)] = sample_prior(*prior, rng);
                    }
                }
            }
            ColumnBlock::Supplied(matrix) => {
                check_rows("supplied teacher block", matrix, dimension)?;
                teacher
                    .columns_mut(next_column, matrix.ncols())
                    .copy_from(matrix);
            }
        }
        next_column += block.columns();
    }
    Ok(teacher)
}

/// Token sequences with their teacher fields, frozen-student fields and label noise.
///
/// Token `l` of sample `mu` is column `mu * L + l` of the `d x (n L)` input matrix, so each
/// token vector is contiguous. Per-sample field arrays are row-major `L x width`.
#[derive(Debug, Clone)]
pub struct Dataset {
    tokens: usize,
    samples: usize,
    teacher_width: usize,
    frozen_width: usize,
    noise_dim: usize,
    inputs: DMatrix<f64>,
    teacher_fields: Vec<f64>,
    frozen_fields: Vec<f64>,
    noise: Vec<f64>,
}

impl Dataset {
    /// Draws `samples` sequences of `tokens` standard Gaussian tokens and, per sample,
    /// `noise_dim` standard Gaussian noise variables (pass 0 for a clean test set).
    pub fn draw<R: Rng + ?Sized>(
        rng: &mut R,
        samples: usize,
        tokens: usize,
        teacher: &DMatrix<f64>,
        frozen: &DMatrix<f64>,
        noise_dim: usize,
    ) -> Result<Self, SimError> {
        let dimension = teacher.nrows();
        let inputs = DMatrix::from_fn(dimension, samples * tokens, |_, _| {
            rng.sample(StandardNormal)
        });
        let noise = (0..samples * noise_dim)
            .map(|_| rng.sample(StandardNormal))
            .collect();
        Self::from_parts(inputs, tokens, teacher, frozen, noise, noise_dim)
    }

    /// Builds a dataset from given inputs (`d x (n L)`) and noise (`n * noise_dim`, row-major).
    pub fn from_parts(
        inputs: DMatrix<f64>,
        tokens: usize,
        teacher: &DMatrix<f64>,
        frozen: &DMatrix<f64>,
        noise: Vec<f64>,
        noise_dim: usize,
    ) -> Result<Self, SimError> {
        let dimension = inputs.nrows();
        if tokens == 0 || !inputs.ncols().is_multiple_of(tokens) {
            return Err(SimError::InvalidSpec(format!(
                "{} token columns do not split into sequences of {tokens} tokens",
                inputs.ncols()
            )));
        }
        let samples = inputs.ncols() / tokens;
        check_rows("teacher", teacher, dimension)?;
        check_rows("frozen columns", frozen, dimension)?;
        if noise.len() != samples * noise_dim {
            return Err(SimError::InvalidSpec(format!(
                "{} noise values given for {samples} samples of {noise_dim} noise variables",
                noise.len()
            )));
        }
        // (k x d)(d x nL) is column-major k x nL: exactly the row-major per-token layout.
        let fields = |columns: &DMatrix<f64>| -> Vec<f64> {
            let product = columns.tr_mul(&inputs) / (dimension as f64).sqrt();
            product.as_slice().to_vec()
        };
        Ok(Self {
            tokens,
            samples,
            teacher_width: teacher.ncols(),
            frozen_width: frozen.ncols(),
            noise_dim,
            teacher_fields: fields(teacher),
            frozen_fields: fields(frozen),
            inputs,
            noise,
        })
    }

    pub fn dimension(&self) -> usize {
        self.inputs.nrows()
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn teacher_width(&self) -> usize {
        self.teacher_width
    }

    pub fn frozen_width(&self) -> usize {
        self.frozen_width
    }

    pub fn noise_dim(&self) -> usize {
        self.noise_dim
    }

    /// The `d x (n L)` matrix of token vectors.
    pub fn inputs(&self) -> &DMatrix<f64> {
        &self.inputs
    }

    /// Token vector of sequence position `column = mu * L + l`.
    pub fn token(&self, column: usize) -> &[f64] {
        let dimension = self.dimension();
        &self.inputs.as_slice()[column * dimension..(column + 1) * dimension]
    }

    /// Teacher fields of sample `sample`, row-major `L x k_t`.
    pub fn teacher_fields(&self, sample: usize) -> &[f64] {
        let width = self.tokens * self.teacher_width;
        &self.teacher_fields[sample * width..(sample + 1) * width]
    }

    /// Frozen-student fields of sample `sample`, row-major `L x k_f`.
    pub fn frozen_fields(&self, sample: usize) -> &[f64] {
        let width = self.tokens * self.frozen_width;
        &self.frozen_fields[sample * width..(sample + 1) * width]
    }

    /// Label noise of sample `sample`.
    pub fn noise(&self, sample: usize) -> &[f64] {
        &self.noise[sample * self.noise_dim..(sample + 1) * self.noise_dim]
    }
}
