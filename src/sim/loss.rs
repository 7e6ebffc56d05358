//! The per-sample loss interface ([`SequenceLoss`]) and the forward-mode machinery that turns
//! it into the value and the gradient with respect to one sample's trainable fields.
//!
//! The gradient is taken with vector duals (`DualSVec64<N>`, one pass) when the sample has at
//! most [`MAX_VECTOR_DUAL`] trainable fields, and with one `Dual64` pass per field beyond that.

use num_dual::{Derivative, Dual64, DualNum, DualSVec64};

use crate::eval::tape::RefArith;

/// A per-sample loss of a sequence multi-index model.
///
/// Field slices are row-major and token-major: entry `(l, j)` of the `L x width` array sits at
/// `l * width + j`. Student rows list the frozen columns first, then the trainable ones.
pub trait SequenceLoss: Sync {
    /// Number of tokens `L` per sample.
    fn tokens(&self) -> usize;

    /// Number of i.i.d. N(0,1) label-noise variables drawn afresh for each training sample.
    fn noise_dim(&self) -> usize;

    /// Training loss of one sample; generic so that dual numbers can flow through the student
    /// fields (teacher fields and noise are plain numbers).
    fn loss<D: DualNum<Primitive = f64> + Copy + RefArith>(
        &self,
        student: &[D],
        teacher: &[f64],
        noise: &[f64],
    ) -> D;

    /// Test loss of one sample against the clean teacher; defaults to the training loss with
    /// zero noise.
    fn test_loss(&self, student: &[f64], teacher: &[f64]) -> f64 {
        // Stack buffer so the common case allocates nothing per sample.
        const STACK_NOISE: usize = 16;
        let noise_dim = self.noise_dim();
        if noise_dim <= STACK_NOISE {
            self.loss(student, teacher, &[0.0; STACK_NOISE][..noise_dim])
        } else {
            self.loss(student, teacher, &vec![0.0; noise_dim])
        }
    }
}

/// Largest number of trainable fields per sample handled by a single vector-dual pass.
pub const MAX_VECTOR_DUAL: usize = 8;

/// Shape of one sample's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLayout {
    pub tokens: usize,
    pub frozen: usize,
    pub trainable: usize,
    pub teacher: usize,
    pub noise: usize,
}

impl FieldLayout {
    /// Columns of the student array handed to the loss (frozen + trainable).
    pub fn student_width(&self) -> usize {
        self.frozen + self.trainable
    }

    /// Number of trainable fields of one sample (`L * k`).
    pub fn trainable_fields(&self) -> usize {
        self.tokens * self.trainable
    }
}

/// Interleave frozen (`L x k_f`) and trainable (`L x k`) rows into the student layout.
pub(crate) fn fill_student<D: Copy>(
    layout: &FieldLayout,
    frozen: &[f64],
    trainable: &[f64],
    student: &mut Vec<D>,
    constant: impl Fn(f64) -> D,
    variable: impl Fn(f64, usize) -> D,
) {
    student.clear();
    for token in 0..layout.tokens {
        let frozen_row = &frozen[token * layout.frozen..(token + 1) * layout.frozen];
        student.extend(frozen_row.iter().map(|&value| constant(value)));
        for column in 0..layout.trainable {
            let index = token * layout.trainable + column;
            student.push(variable(trainable[index], index));
        }
    }
}

/// Value of one sample's loss and its gradient with respect to the trainable fields.
pub trait FieldGradient<S: SequenceLoss> {
    fn new(layout: FieldLayout) -> Self;

    /// Returns the loss; writes `d loss / d trainable[i]` into `gradient[i]`.
    fn value_and_gradient(
        &mut self,
        loss: &S,
        frozen: &[f64],
        trainable: &[f64],
        teacher: &[f64],
        noise: &[f64],
        gradient: &mut [f64],
    ) -> f64;
}

/// One forward pass with an `N`-component vector dual (requires `N == L * k`).
pub struct VectorDualGradient<const N: usize> {
    layout: FieldLayout,
    student: Vec<DualSVec64<N>>,
}

impl<S: SequenceLoss, const N: usize> FieldGradient<S> for VectorDualGradient<N> {
    fn new(layout: FieldLayout) -> Self {
        debug_assert_eq!(layout.trainable_fields(), N);
        let student = Vec::with_capacity(layout.tokens * layout.student_width());
        Self { layout, student }
    }

    fn value_and_gradient(
        &mut self,
        loss: &S,
        frozen: &[f64],
        trainable: &[f64],
        teacher: &[f64],
        noise: &[f64],
        gradient: &mut [f64],
    ) -> f64 {
        fill_student(
            &self.layout,
            frozen,
            trainable,
            &mut self.student,
            DualSVec64::<N>::from_re,
            |value, index| DualSVec64::<N>::from_re(value).derivative(index),
        );
        let value = loss.loss(&self.student, teacher, noise);
        match &value.eps {
            Derivative(Some(derivative)) => gradient.copy_from_slice(derivative.as_slice()),
            // A loss that ignores the trainable fields has no derivative part.
            Derivative(None) => gradient.fill(0.0),
        }
        value.re
    }
}

/// One `Dual64` pass per trainable field, for samples with many trainable fields.
pub struct ScalarDualGradient {
    layout: FieldLayout,
    student: Vec<Dual64>,
}

impl<S: SequenceLoss> FieldGradient<S> for ScalarDualGradient {
    fn new(layout: FieldLayout) -> Self {
        let student = Vec::with_capacity(layout.tokens * layout.student_width());
        Self { layout, student }
    }

    fn value_and_gradient(
        &mut self,
        loss: &S,
        frozen: &[f64],
        trainable: &[f64],
        teacher: &[f64],
        noise: &[f64],
        gradient: &mut [f64],
    ) -> f64 {
        // Without trainable fields there is no derivative to seed: one plain pass.
        if gradient.is_empty() {
            fill_student(
                &self.layout,
                frozen,
                trainable,
                &mut self.student,
                Dual64::from_re,
                |re, _| Dual64::from_re(re),
            );
            return loss.loss(&self.student, teacher, noise).re;
        }
        let mut value = 0.0;
        for (direction, slot) in gradient.iter_mut().enumerate() {
            fill_student(
                &self.layout,
                frozen,
                trainable,
                &mut self.student,
                Dual64::from_re,
                |re, index| Dual64::new(re, if index == direction { 1.0 } else { 0.0 }),
            );
            let result = loss.loss(&self.student, teacher, noise);
            *slot = result.eps;
            value = result.re;
        }
        value
    }
}

/// A computation that is generic over the [`FieldGradient`] engine it uses.
pub trait WithFieldGradient<S: SequenceLoss> {
    type Output;
    fn run<E: FieldGradient<S>>(self) -> Self::Output;
}

/// Runs `task` with the fastest [`FieldGradient`] engine for `fields` trainable fields per
/// sample (dispatching once per objective evaluation, not per sample).
pub fn dispatch_field_gradient<S: SequenceLoss, T: WithFieldGradient<S>>(
    fields: usize,
    task: T,
) -> T::Output {
    match fields {
        1 => task.run::<VectorDualGradient<1>>(),
        2 => task.run::<VectorDualGradient<2>>(),
        3 => task.run::<VectorDualGradient<3>>(),
        4 => task.run::<VectorDualGradient<4>>(),
        5 => task.run::<VectorDualGradient<5>>(),
        6 => task.run::<VectorDualGradient<6>>(),
        7 => task.run::<VectorDualGradient<7>>(),
        8 => task.run::<VectorDualGradient<8>>(),
        _ => task.run::<ScalarDualGradient>(),
    }
}
