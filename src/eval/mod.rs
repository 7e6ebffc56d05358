//! Evaluation of lowered programs generic over num-dual number types: f64 for values,
//! first-order duals for gradients, second-order duals for Hessians. Owns the Gaussian
//! expectations (node tables), the inner minimisations, special functions and small
//! matrix algebra.

pub mod first_order;
pub mod inner;
pub mod linalg;
pub mod nodes;
pub mod quadrature;
pub mod second_order;
pub mod special;
pub mod tape;

use num_dual::DualNum;

pub use inner::Search;
pub use tape::Evaluator;

/// The number types a program runs on.
pub trait Number: DualNum<Primitive = f64> + Copy + Send + Sync + tape::RefArith {}
impl<T: DualNum<Primitive = f64> + Copy + Send + Sync + tape::RefArith> Number for T {}

/// A failure while evaluating (a non-finite value, a failed factorisation, an inner
/// minimisation that did not converge).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

impl EvalError {
    pub fn new(message: impl Into<String>) -> Self {
        EvalError { message: message.into() }
    }
}
