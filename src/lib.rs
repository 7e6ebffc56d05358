//! Replica-symmetric asymptotics of high-dimensional learning models, from model files.
//!
//! A model file travels `syntax` (text to AST) -> `types` (names, roles, shapes; lowering
//! to the `ir` tape) -> `eval` (the tape over num-dual numbers: expectations, inner
//! minimisations) -> `solve` (saddle-point equations, solvers, sweeps) -> `pipeline`
//! (imports and stage chaining) -> `cli`. `sim` simulates the same models at finite size.

pub mod cli;
pub mod diagnostic;
pub mod eval;
pub mod figure;
pub mod ir;
pub mod output;
pub mod pipeline;
pub mod sim;
pub mod solve;
pub mod syntax;
pub mod types;
