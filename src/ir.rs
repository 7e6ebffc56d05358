//! The typed, resolved program a model file lowers to: a straight-line tape of scalar
//! instructions over a register file of slots. Shapes are gone (a k x k matrix is k*k slots,
//! transposes and indexing are resolved at lowering time), names are gone (variables are
//! slots), constants are f64. Expectations and minimisations are block instructions holding
//! their own tape. The evaluator (`eval`) runs a tape generically over num-dual number types.

use serde::Serialize;

pub type Slot = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum UnaryFn {
    Neg,
    Exp,
    Ln,
    Ln1p,
    Sqrt,
    Abs,
    Erf,
    Erfc,
    GaussianTail,
    LogGaussianTail,
    GaussianPdf,
    GaussianCdf,
    Sigmoid,
    LogSigmoid,
    Softplus,
    Tanh,
    LogCosh,
    Sin,
    Cos,
    /// Heaviside step (derivative zero): for selection weights.
    Step,
    Sign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BinaryFn {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MatrixFn {
    Inverse,
    Cholesky,
    /// Symmetric square root (through Cholesky-free eigen-iteration: Denman-Beavers).
    SqrtSymmetric,
    LogDet,
    Det,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Instr {
    Const { dst: Slot, value: f64 },
    Copy { dst: Slot, src: Slot },
    Unary { op: UnaryFn, dst: Slot, src: Slot },
    Binary { op: BinaryFn, dst: Slot, left: Slot, right: Slot },
    PowI { dst: Slot, src: Slot, exponent: i32 },
    LogSumExp { dst: Slot, src: Vec<Slot> },
    Matrix { op: MatrixFn, size: usize, src: Vec<Slot>, dst: Vec<Slot> },
    Expect(Box<ExpectBlock>),
    Minimize(Box<MinimizeBlock>),
}

/// One scalar integration variable of an expectation, before any affine transformation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Component {
    Normal,
    Rademacher,
    /// 0 with probability 1 - density, else N(0, 1/density).
    GaussBernoulli { density: f64 },
}

/// How the nodes of an expectation are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IntegrationRule {
    Hermite { nodes_per_dimension: usize },
    Sobol { points: usize, scrambles: usize },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectBlock {
    pub components: Vec<Component>,
    pub rule: IntegrationRule,
    /// Where each component's node value is written before the body runs.
    pub node_slots: Vec<Slot>,
    pub body: Vec<Instr>,
    pub weight: Option<Slot>,
    /// Body values to average (an expectation of a vector or matrix averages each entry).
    pub result: Vec<Slot>,
    pub dst: Vec<Slot>,
    /// Index of this block in the program's block table (node tables, caches).
    pub id: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinimizeBlock {
    pub variable: Vec<Slot>,
    pub body: Vec<Instr>,
    pub objective: Slot,
    /// Slots of the enclosing scope the body reads.
    pub inputs: Vec<Slot>,
    /// Starting points (already evaluated in the enclosing scope), besides 0 and the cache.
    pub starts: Vec<Vec<Slot>>,
    pub dst_value: Option<Slot>,
    pub dst_argument: Option<Vec<Slot>>,
    /// Index into the program's minimiser caches.
    pub id: usize,
    /// Number of enclosing integration nodes (product over enclosing expectations).
    pub cache_len: usize,
}

/// A lowered program: a tape plus the number of slots it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Program {
    pub instrs: Vec<Instr>,
    pub slot_count: usize,
    pub expect_count: usize,
    pub minimize_count: usize,
    pub minimize_cache_sizes: Vec<(usize, usize)>,
}
