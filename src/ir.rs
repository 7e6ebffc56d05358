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
    /// Eigenvalues of a symmetric matrix, ascending (first derivatives exact).
    EigenvaluesSymmetric,
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
    Hessian(Box<HessianBlock>),
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

/// A minimisation. Its body runs on a small register file of its own (see [`LocalBody`]).
/// Everything that does not depend on the variable was hoisted out at lowering time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinimizeBlock {
    /// The objective's tape over its own register file.
    pub local: LocalBody,
    /// Starting points (enclosing slots), besides 0 and the cache.
    pub starts: Vec<Vec<Slot>>,
    pub dst_value: Option<Slot>,
    pub dst_argument: Option<Vec<Slot>>,
    /// Index into the program's minimiser caches.
    pub id: usize,
    /// Number of enclosing integration nodes (product over enclosing expectations).
    pub cache_len: usize,
}

/// Second derivatives of a scalar body in a variable, at a point: values only (observables).
/// Like a minimisation, the body runs on a register file of its own; it may contain
/// minimisations, whose own inputs are renumbered onto that file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HessianBlock {
    /// The differentiated value's tape over its own register file.
    pub local: LocalBody,
    /// Enclosing slots of the point.
    pub point: Vec<Slot>,
    /// Enclosing slots of the k x k result, row-major.
    pub dst: Vec<Slot>,
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

/// Slots an instruction reads and writes (blocks: what they read from and write to the
/// enclosing scope).
pub fn reads_writes(instr: &Instr) -> (Vec<Slot>, Vec<Slot>) {
    match instr {
        Instr::Const { dst, .. } => (vec![], vec![*dst]),
        Instr::Copy { dst, src } | Instr::Unary { dst, src, .. } | Instr::PowI { dst, src, .. } => (vec![*src], vec![*dst]),
        Instr::Binary { dst, left, right, .. } => (vec![*left, *right], vec![*dst]),
        Instr::LogSumExp { dst, src } => (src.clone(), vec![*dst]),
        Instr::Matrix { src, dst, .. } => (src.clone(), dst.clone()),
        Instr::Expect(block) => {
            let mut written: std::collections::BTreeSet<Slot> = block.node_slots.iter().copied().collect();
            (external_reads(&block.body, &mut written), block.dst.clone())
        }
        Instr::Minimize(block) => {
            let mut reads: Vec<Slot> = block.local.inputs.iter().map(|(outer, _)| *outer).collect();
            reads.extend(block.starts.iter().flatten().copied());
            let mut writes: Vec<Slot> = block.dst_value.into_iter().collect();
            writes.extend(block.dst_argument.iter().flatten().copied());
            (reads, writes)
        }
        Instr::Hessian(block) => {
            let mut reads: Vec<Slot> = block.local.inputs.iter().map(|(outer, _)| *outer).collect();
            reads.extend(block.point.iter().copied());
            (reads, block.dst.clone())
        }
    }
}

/// Slots a tape reads before writing them, given slots already written.
pub fn external_reads(instrs: &[Instr], written: &mut std::collections::BTreeSet<Slot>) -> Vec<Slot> {
    let mut reads = Vec::new();
    for instr in instrs {
        let (r, w) = reads_writes(instr);
        for s in r {
            if !written.contains(&s) && !reads.contains(&s) {
                reads.push(s);
            }
        }
        written.extend(w);
    }
    reads
}

/// Split a block body into the instructions that do not depend on `bound` (hoisted out of
/// the block, in order) and those that do. Nested blocks always stay.
pub fn hoist_invariant(body: Vec<Instr>, bound: &[Slot]) -> (Vec<Instr>, Vec<Instr>) {
    let mut dependent: std::collections::BTreeSet<Slot> = bound.iter().copied().collect();
    let mut hoisted = Vec::new();
    let mut kept = Vec::new();
    for instr in body {
        let (reads, writes) = reads_writes(&instr);
        let is_block = matches!(instr, Instr::Expect(_) | Instr::Minimize(_) | Instr::Hessian(_));
        if is_block || reads.iter().any(|r| dependent.contains(r)) {
            dependent.extend(writes);
            kept.push(instr);
        } else {
            hoisted.push(instr);
        }
    }
    (hoisted, kept)
}

/// A block body renumbered onto a register file of its own (`local_count` slots): the
/// variable, then the inputs copied from the enclosing scope, then temporaries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalBody {
    pub body: Vec<Instr>,
    pub local_count: usize,
    /// (enclosing slot, local slot) of every value the body reads from outside.
    pub inputs: Vec<(Slot, Slot)>,
    /// Local slots of the bound variable.
    pub variable: Vec<Slot>,
    /// Local slot of the body's scalar value (the objective, or the differentiated value).
    pub objective: Slot,
}

/// Renumber a plain tape onto local slots: `variable` first, then the values read from
/// outside, then temporaries.
pub fn compact(body: &[Instr], variable: &[Slot], objective: Slot) -> LocalBody {
    let mut local: std::collections::BTreeMap<Slot, Slot> = std::collections::BTreeMap::new();
    for &v in variable {
        let next = local.len();
        local.insert(v, next);
    }
    let mut written: std::collections::BTreeSet<Slot> = variable.iter().copied().collect();
    let external = external_reads(body, &mut written);
    let mut inputs = Vec::new();
    for s in external {
        let next = local.len();
        local.insert(s, next);
        inputs.push((s, next));
    }
    let map = |s: Slot, local: &mut std::collections::BTreeMap<Slot, Slot>| -> Slot {
        let next = local.len();
        *local.entry(s).or_insert(next)
    };
    let renumbered: Vec<Instr> = body
        .iter()
        .map(|instr| match instr {
            Instr::Const { dst, value } => Instr::Const { dst: map(*dst, &mut local), value: *value },
            Instr::Copy { dst, src } => {
                let src = map(*src, &mut local);
                Instr::Copy { dst: map(*dst, &mut local), src }
            }
            Instr::Unary { op, dst, src } => {
                let src = map(*src, &mut local);
                Instr::Unary { op: *op, dst: map(*dst, &mut local), src }
            }
            Instr::Binary { op, dst, left, right } => {
                let (left, right) = (map(*left, &mut local), map(*right, &mut local));
                Instr::Binary { op: *op, dst: map(*dst, &mut local), left, right }
            }
            Instr::PowI { dst, src, exponent } => {
                let src = map(*src, &mut local);
                Instr::PowI { dst: map(*dst, &mut local), src, exponent: *exponent }
            }
            Instr::LogSumExp { dst, src } => {
                let src = src.iter().map(|s| map(*s, &mut local)).collect();
                Instr::LogSumExp { dst: map(*dst, &mut local), src }
            }
            Instr::Matrix { op, size, src, dst } => {
                let src = src.iter().map(|s| map(*s, &mut local)).collect();
                Instr::Matrix { op: *op, size: *size, src, dst: dst.iter().map(|s| map(*s, &mut local)).collect() }
            }
            Instr::Minimize(block) => {
                // A minimisation inside a Hessian body: its enclosing slots move too.
                let mut block = block.clone();
                for (outer, _) in block.local.inputs.iter_mut() {
                    *outer = map(*outer, &mut local);
                }
                for start in block.starts.iter_mut() {
                    for slot in start.iter_mut() {
                        *slot = map(*slot, &mut local);
                    }
                }
                block.dst_value = block.dst_value.map(|s| map(s, &mut local));
                block.dst_argument = block.dst_argument.map(|d| d.iter().map(|s| map(*s, &mut local)).collect());
                Instr::Minimize(block)
            }
            block => block.clone(),
        })
        .collect();
    let objective_local = map(objective, &mut local);
    let variable_local = variable.iter().map(|v| local[v]).collect();
    LocalBody { body: renumbered, local_count: local.len(), inputs, variable: variable_local, objective: objective_local }
}
