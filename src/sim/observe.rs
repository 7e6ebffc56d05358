//! Observables of trained weights: test error on a fresh clean test set, the overlap matrices
//! that the asymptotic theory predicts, and their sign-invariant forms.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::loss::{fill_student, FieldLayout};
use super::objective::trainable_fields;
use super::spec::check_shape;
use super::{Dataset, SequenceLoss, SimError};

/// Test error and overlaps of one trained run. Matrices are nested row-major vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observables {
    /// Mean test loss over the fresh test set (clean teacher, no label noise).
    pub test_error: f64,
    /// `M = W^T T / d`, `k x k_t`.
    pub overlap_with_teacher: Vec<Vec<f64>>,
    /// `Q = W^T W / d`, `k x k`.
    pub self_overlap: Vec<Vec<f64>>,
    /// `W^T F / d`, `k x k_f`.
    pub overlap_with_frozen: Vec<Vec<f64>>,
}

impl Observables {
    /// `|M_ij|`: unchanged when any trainable column flips sign.
    pub fn abs_overlap_with_teacher(&self) -> Vec<Vec<f64>> {
        absolute(&self.overlap_with_teacher)
    }

    /// `|W^T F / d|` entrywise.
    pub fn abs_overlap_with_frozen(&self) -> Vec<Vec<f64>> {
        absolute(&self.overlap_with_frozen)
    }

    /// `|M_ij| / sqrt(Q_ii rho_jj)` for the teacher overlap `rho = T^T T / d`.
    pub fn cosines_with_teacher(&self, teacher_overlap: &[Vec<f64>]) -> Vec<Vec<f64>> {
        self.overlap_with_teacher
            .iter()
            .enumerate()
            .map(|(student, row)| {
                row.iter()
                    .enumerate()
                    .map(|(teacher, &m)| {
                        let q = self.self_overlap[student][student];
                        let rho = teacher_overlap
                            .get(teacher)
                            .and_then(|r| r.get(teacher))
                            .copied()
                            .unwrap_or(f64::NAN);
                        cosine(m, q, rho).abs()
                    })
                    .collect()
            })
            .collect()
    }
}

fn absolute(matrix: &[Vec<f64>]) -> Vec<Vec<f64>> {
    matrix
        .iter()
        .map(|row| row.iter().map(|v| v.abs()).collect())
        .collect()
}

/// Signed cosine `m / sqrt(q rho)` of two columns with overlap `m` and self-overlaps `q`, `rho`
/// (0 when either column vanishes).
pub fn cosine(overlap: f64, self_overlap: f64, teacher_overlap: f64) -> f64 {
    let norm = (self_overlap * teacher_overlap).sqrt();
    if norm > 0.0 {
        overlap / norm
    } else {
        0.0
    }
}

/// `A^T B / d` as nested rows (`d` = number of rows).
pub fn overlap(left: &DMatrix<f64>, right: &DMatrix<f64>) -> Vec<Vec<f64>> {
    let product = left.tr_mul(right) / left.nrows() as f64;
    product
        .row_iter()
        .map(|row| row.iter().copied().collect())
        .collect()
}

/// Mean test loss of `d x k` weights on `test` (its teacher and frozen fields are precomputed).
pub fn mean_test_loss<S: SequenceLoss>(
    loss: &S,
    test: &Dataset,
    weights: &DMatrix<f64>,
) -> Result<f64, SimError> {
    check_shape("weights", weights, test.dimension(), weights.ncols())?;
    if loss.tokens() != test.tokens() {
        return Err(SimError::InvalidSpec(format!(
            "loss expects {} tokens, test data has {}",
            loss.tokens(),
            test.tokens()
        )));
    }
    let layout = FieldLayout {
        tokens: test.tokens(),
        frozen: test.frozen_width(),
        trainable: weights.ncols(),
        teacher: test.teacher_width(),
        noise: 0,
    };
    let mut fields = vec![0.0; layout.trainable_fields()];
    let mut student = Vec::with_capacity(layout.tokens * layout.student_width());
    let mut total = 0.0;
    for sample in 0..test.samples() {
        trainable_fields(
            test,
            weights.as_slice(),
            layout.trainable,
            sample,
            &mut fields,
        );
        fill_student(
            &layout,
            test.frozen_fields(sample),
            &fields,
            &mut student,
            |v| v,
            |v, _| v,
        );
        total += loss.test_loss(&student, test.teacher_fields(sample));
    }
    Ok(total / test.samples() as f64)
}

/// All observables of `weights` (`d x k`) given the teacher (`d x k_t`), the frozen columns
/// (`d x k_f`) and a test set drawn with the same teacher and frozen columns.
pub fn observe<S: SequenceLoss>(
    loss: &S,
    test: &Dataset,
    weights: &DMatrix<f64>,
    teacher: &DMatrix<f64>,
    frozen: &DMatrix<f64>,
) -> Result<Observables, SimError> {
    check_shape("teacher", teacher, test.dimension(), test.teacher_width())?;
    check_shape(
        "frozen columns",
        frozen,
        test.dimension(),
        test.frozen_width(),
    )?;
    Ok(Observables {
        test_error: mean_test_loss(loss, test, weights)?,
        overlap_with_teacher: overlap(weights, teacher),
        self_overlap: overlap(weights, weights),
        overlap_with_frozen: overlap(weights, frozen),
    })
}
