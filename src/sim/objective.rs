//! The training objective `sum_mu loss_mu + ridge/2 ||W||_F^2` and its gradient with respect
//! to the trainable weights.
//!
//! One evaluation streams once through the token matrix: for each sample it computes the
//! trainable fields (`h = W^T x / sqrt(d)`), the loss and its field gradient `G_mu` (forward-mode
//! duals), and immediately accumulates `X_mu^T G_mu / sqrt(d)` while the sample's tokens are
//! still in cache. This is the batched product `X^T G / sqrt(d)` fused with `X W / sqrt(d)`,
//! so the inputs are read from memory once per evaluation. Samples are visited in a fixed
//! order, so results are bit-for-bit reproducible.

use nalgebra::DMatrix;

use super::loss::{
    dispatch_field_gradient, fill_student, FieldGradient, FieldLayout, WithFieldGradient,
};
use super::spec::check_shape;
use super::{Dataset, SequenceLoss, SimError};

/// Dot product with independent partial sums (lets the compiler vectorise the reduction).
#[inline]
pub(crate) fn dot(left: &[f64], right: &[f64]) -> f64 {
    const LANES: usize = 8;
    let mut partial = [0.0; LANES];
    let left_chunks = left.chunks_exact(LANES);
    let right_chunks = right.chunks_exact(LANES);
    let tail: f64 = left_chunks
        .remainder()
        .iter()
        .zip(right_chunks.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in left_chunks.zip(right_chunks) {
        for lane in 0..LANES {
            partial[lane] += a[lane] * b[lane];
        }
    }
    let pairs = [
        partial[0] + partial[4],
        partial[1] + partial[5],
        partial[2] + partial[6],
        partial[3] + partial[7],
    ];
    (pairs[0] + pairs[2]) + (pairs[1] + pairs[3]) + tail
}

/// `target += scale * source`.
#[inline]
pub(crate) fn axpy(scale: f64, source: &[f64], target: &mut [f64]) {
    for (t, s) in target.iter_mut().zip(source) {
        *t += scale * s;
    }
}

/// Writes the `L x k` trainable fields of `sample` (row-major) for column-major `d x k` weights.
#[inline]
pub(crate) fn trainable_fields(
    data: &Dataset,
    weights: &[f64],
    trainable: usize,
    sample: usize,
    fields: &mut [f64],
) {
    let dimension = data.dimension();
    let scale = 1.0 / (dimension as f64).sqrt();
    for token in 0..data.tokens() {
        let input = data.token(sample * data.tokens() + token);
        for column in 0..trainable {
            let weight = &weights[column * dimension..(column + 1) * dimension];
            fields[token * trainable + column] = dot(input, weight) * scale;
        }
    }
}

/// The regularised empirical risk of a [`Dataset`] under a [`SequenceLoss`].
pub struct Objective<'a, S: SequenceLoss> {
    loss: &'a S,
    data: &'a Dataset,
    layout: FieldLayout,
    ridge: f64,
}

impl<'a, S: SequenceLoss> Objective<'a, S> {
    /// The objective for `trainable` columns with ridge coefficient `ridge`.
    pub fn new(
        loss: &'a S,
        data: &'a Dataset,
        trainable: usize,
        ridge: f64,
    ) -> Result<Self, SimError> {
        if loss.tokens() != data.tokens() || loss.noise_dim() != data.noise_dim() {
            return Err(SimError::InvalidSpec(format!(
                "loss expects {} tokens and {} noise variables, data has {} and {}",
                loss.tokens(),
                loss.noise_dim(),
                data.tokens(),
                data.noise_dim()
            )));
        }
        let layout = FieldLayout {
            tokens: data.tokens(),
            frozen: data.frozen_width(),
            trainable,
            teacher: data.teacher_width(),
            noise: data.noise_dim(),
        };
        Ok(Self {
            loss,
            data,
            layout,
            ridge,
        })
    }

    /// Number of scalar parameters `d k`.
    pub fn parameter_count(&self) -> usize {
        self.data.dimension() * self.layout.trainable
    }

    fn check_weights(&self, weights: &DMatrix<f64>) -> Result<(), SimError> {
        check_shape(
            "weights",
            weights,
            self.data.dimension(),
            self.layout.trainable,
        )
    }

    /// Objective at `d x k` weights.
    pub fn value(&self, weights: &DMatrix<f64>) -> Result<f64, SimError> {
        self.check_weights(weights)?;
        Ok(self.value_of(weights.as_slice()))
    }

    /// Objective and its gradient (`d x k`) at `d x k` weights.
    pub fn value_and_gradient(
        &self,
        weights: &DMatrix<f64>,
    ) -> Result<(f64, DMatrix<f64>), SimError> {
        self.check_weights(weights)?;
        let mut gradient = DMatrix::zeros(weights.nrows(), weights.ncols());
        let value = self.value_and_gradient_into(weights.as_slice(), gradient.as_mut_slice());
        Ok((value, gradient))
    }

    /// Objective at column-major weights of length `d k` (caller checks the length).
    pub(crate) fn value_of(&self, weights: &[f64]) -> f64 {
        let layout = self.layout;
        let mut fields = vec![0.0; layout.trainable_fields()];
        let mut student = Vec::with_capacity(layout.tokens * layout.student_width());
        let mut total = 0.0;
        for sample in 0..self.data.samples() {
            trainable_fields(self.data, weights, layout.trainable, sample, &mut fields);
            fill_student(
                &layout,
                self.data.frozen_fields(sample),
                &fields,
                &mut student,
                |v| v,
                |v, _| v,
            );
            total += self.loss.loss(
                &student,
                self.data.teacher_fields(sample),
                self.data.noise(sample),
            );
        }
        total + self.ridge_value(weights)
    }

    /// Objective at column-major weights; writes the gradient into `gradient` (same length).
    pub(crate) fn value_and_gradient_into(&self, weights: &[f64], gradient: &mut [f64]) -> f64 {
        dispatch_field_gradient(
            self.layout.trainable_fields(),
            GradientPass {
                objective: self,
                weights,
                gradient,
            },
        )
    }

    fn ridge_value(&self, weights: &[f64]) -> f64 {
        0.5 * self.ridge * weights.iter().map(|w| w * w).sum::<f64>()
    }
}

/// One fused forward/backward sweep over the data with field-gradient engine `E`.
struct GradientPass<'o, 'a, S: SequenceLoss> {
    objective: &'o Objective<'a, S>,
    weights: &'o [f64],
    gradient: &'o mut [f64],
}

impl<S: SequenceLoss> WithFieldGradient<S> for GradientPass<'_, '_, S> {
    type Output = f64;

    fn run<E: FieldGradient<S>>(self) -> f64 {
        let Self {
            objective,
            weights,
            gradient,
        } = self;
        let data = objective.data;
        let layout = objective.layout;
        let dimension = data.dimension();
        let scale = 1.0 / (dimension as f64).sqrt();
        let mut engine = E::new(layout);
        let mut fields = vec![0.0; layout.trainable_fields()];
        let mut field_gradient = vec![0.0; layout.trainable_fields()];
        gradient.fill(0.0);
        let mut total = 0.0;
        for sample in 0..data.samples() {
            trainable_fields(data, weights, layout.trainable, sample, &mut fields);
            total += engine.value_and_gradient(
                objective.loss,
                data.frozen_fields(sample),
                &fields,
                data.teacher_fields(sample),
                data.noise(sample),
                &mut field_gradient,
            );
            for token in 0..layout.tokens {
                let input = data.token(sample * layout.tokens + token);
                for column in 0..layout.trainable {
                    let weight_gradient =
                        &mut gradient[column * dimension..(column + 1) * dimension];
                    axpy(
                        field_gradient[token * layout.trainable + column] * scale,
                        input,
                        weight_gradient,
                    );
                }
            }
        }
        axpy(objective.ridge, weights, gradient);
        total + objective.ridge_value(weights)
    }
}
