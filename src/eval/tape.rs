//! Running a tape over any num-dual number type. Expectations loop over their node table
//! (in parallel, in fixed chunks, so results do not depend on the thread count);
//! minimisations solve in f64 and lift the minimiser into the number type through the
//! implicit-function theorem (see `inner`).

use std::ops::{Add, Div, Mul, Neg, Sub};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use num_dual::{DualNum, HyperDualVec};
use rayon::prelude::*;

use super::inner::{self, Search};
use super::nodes::{self, NodeTable};
use super::{linalg, special, EvalError, Number};
use crate::ir::*;

/// Expectations with at least this many nodes run in parallel chunks of this size.
const PARALLEL_CHUNK: usize = 512;

/// Warm starts for inner minimisations: the last f64 minimiser at every integration node.
pub struct MinimizerCache {
    pub dimension: usize,
    values: Vec<AtomicU64>,
    /// Relative gap between the two lowest basins at each node's last full search (NaN
    /// before the first; infinite where only one basin was found).
    gaps: Vec<AtomicU64>,
    /// Exhaustive searches whose global minimiser is not the one tracked from the cache.
    switches: AtomicU64,
}

impl MinimizerCache {
    fn new(dimension: usize, nodes: usize) -> Self {
        MinimizerCache {
            dimension,
            values: (0..dimension * nodes).map(|_| AtomicU64::new(f64::NAN.to_bits())).collect(),
            gaps: (0..nodes).map(|_| AtomicU64::new(f64::NAN.to_bits())).collect(),
            switches: AtomicU64::new(0),
        }
    }
    pub fn count_switch(&self) {
        self.switches.fetch_add(1, Ordering::Relaxed);
    }
    /// Switches counted since the last call.
    pub fn take_switches(&self) -> u64 {
        self.switches.swap(0, Ordering::Relaxed)
    }
    pub fn get(&self, node: usize) -> Option<Vec<f64>> {
        let start = node.checked_mul(self.dimension)?;
        let slice = self.values.get(start..start + self.dimension)?;
        let values: Vec<f64> = slice.iter().map(|v| f64::from_bits(v.load(Ordering::Relaxed))).collect();
        values.iter().all(|v| v.is_finite()).then_some(values)
    }
    /// (nodes whose two lowest basins lie within relative `gap` at their last full search,
    /// nodes searched at all).
    pub fn near_ties(&self, gap: f64) -> (usize, usize) {
        let gaps = self.gaps.iter().map(|g| f64::from_bits(g.load(Ordering::Relaxed))).filter(|g| !g.is_nan());
        gaps.fold((0, 0), |(tied, searched), g| (tied + usize::from(g < gap), searched + 1))
    }
    /// The node's basin gap (NaN if never searched, which compares as not wide).
    pub fn gap(&self, node: usize) -> f64 {
        self.gaps.get(node).map_or(f64::NAN, |g| f64::from_bits(g.load(Ordering::Relaxed)))
    }
    pub fn set_gap(&self, node: usize, gap: f64) {
        if let Some(cell) = self.gaps.get(node) {
            cell.store(gap.to_bits(), Ordering::Relaxed);
        }
    }
    /// Forget every minimiser, gap and switch count, as if never searched.
    pub fn clear(&self) {
        for cell in self.values.iter().chain(&self.gaps) {
            cell.store(f64::NAN.to_bits(), Ordering::Relaxed);
        }
        self.switches.store(0, Ordering::Relaxed);
    }
    pub fn set(&self, node: usize, minimizer: &[f64]) {
        let start = node * self.dimension;
        if let Some(slice) = self.values.get(start..start + self.dimension) {
            for (cell, v) in slice.iter().zip(minimizer) {
                cell.store(v.to_bits(), Ordering::Relaxed);
            }
        }
    }
}

/// Per block id, the means of an expectation's results over each scramble of its rule.
type ScrambleMeans = Vec<Option<Vec<Vec<f64>>>>;

/// A chunk's sums of weight * result, and its f64 sums per scramble group (see `expect`).
type ChunkSums<D> = (Vec<D>, Vec<f64>);

/// A program with its node tables and minimiser caches.
pub struct Evaluator {
    pub program: Program,
    /// Node table of each expectation present in the program (sliced programs omit some).
    pub tables: Vec<Option<NodeTable>>,
    /// Shared by evaluators of slices of one program: a slice keeps the block ids.
    pub caches: Arc<Vec<MinimizerCache>>,
    /// How inner minimisations search (an `inner::Search` as u8): tracking the cached
    /// minimisers between exhaustive sweeps is several times cheaper.
    search: AtomicU8,
    /// Means of the top-level expectations over each scramble of their rules in the last f64
    /// run, by block id (one group for a deterministic rule). A run on one scramble alone
    /// gives those expectations exactly these values, so it can be replayed without a
    /// second pass over the nodes.
    scramble_means: Arc<Mutex<ScrambleMeans>>,
    /// Set on a replay: top-level expectations take their recorded means on this scramble.
    replayed_scramble: Option<usize>,
}

impl Evaluator {
    pub fn new(program: Program) -> Self {
        let mut tables: Vec<Option<NodeTable>> = vec![None; program.expect_count];
        collect_tables(&program.instrs, &mut tables, &|block| nodes::build(&block.components, block.rule));
        let caches = Arc::new(program.minimize_cache_sizes.iter().map(|&(dim, nodes)| MinimizerCache::new(dim, nodes)).collect());
        let blocks = program.expect_count;
        Evaluator {
            program,
            tables,
            caches,
            search: AtomicU8::new(Search::Exhaustive as u8),
            scramble_means: Arc::new(Mutex::new(vec![None; blocks])),
            replayed_scramble: None,
        }
    }

    /// An evaluator of `program`, a slice of `whole`'s program, that shares `whole`'s
    /// minimiser caches (a minimiser found by one is the warm start of the other) and copies
    /// its node tables instead of building them again.
    pub fn slice_of(whole: &Evaluator, program: Program) -> Self {
        let mut tables: Vec<Option<NodeTable>> = vec![None; program.expect_count];
        collect_tables(&program.instrs, &mut tables, &|block| {
            whole.tables[block.id].clone().unwrap_or_else(|| nodes::build(&block.components, block.rule))
        });
        let blocks = program.expect_count;
        Evaluator {
            program,
            tables,
            caches: Arc::clone(&whole.caches),
            search: AtomicU8::new(Search::Exhaustive as u8),
            scramble_means: Arc::new(Mutex::new(vec![None; blocks])),
            replayed_scramble: None,
        }
    }

    pub fn set_search(&self, search: Search) {
        self.search.store(search as u8, Ordering::Relaxed);
    }

    pub fn search(&self) -> Search {
        match self.search.load(Ordering::Relaxed) {
            0 => Search::Tracked,
            1 => Search::Screened,
            _ => Search::Exhaustive,
        }
    }

    /// Inner minimisations that an exhaustive search moved to another basin (or that had no
    /// cached minimiser) since the last call, over all caches.
    pub fn take_basin_switches(&self) -> u64 {
        self.caches.iter().map(MinimizerCache::take_switches).sum()
    }

    /// Empty every minimiser cache (shared with the slices of this program).
    pub fn clear_caches(&self) {
        self.caches.iter().for_each(MinimizerCache::clear);
    }

    /// Run the whole program on a register file whose unknown slots are already set.
    pub fn run<D: Number>(&self, registers: &mut [D]) -> Result<(), EvalError> {
        self.run_with::<D, Generic>(registers)
    }

    /// `run` with plain instructions executed by the interpreter `S`.
    pub fn run_with<D: Number, S: Interpreter<D>>(&self, registers: &mut [D]) -> Result<(), EvalError> {
        self.run_block::<D, S>(&self.program.instrs, registers, 0, true)
    }

    fn run_block<D: Number, S: Interpreter<D>>(&self, instrs: &[Instr], registers: &mut [D], node: usize, parallel: bool) -> Result<(), EvalError> {
        for instr in instrs {
            match instr {
                Instr::Expect(block) => self.expect::<D, S>(block, registers, node, parallel)?,
                Instr::Minimize(block) => self.minimize::<D, S>(block, registers, node)?,
                Instr::Hessian(block) => self.hessian(block, registers, node)?,
                plain => S::step(plain, registers)?,
            }
        }
        Ok(())
    }

    fn expect<D: Number, S: Interpreter<D>>(&self, block: &ExpectBlock, registers: &mut [D], node: usize, parallel: bool) -> Result<(), EvalError> {
        let table = self.tables[block.id].as_ref().ok_or_else(|| EvalError::new("an expectation without its node table"))?;
        // Only top-level expectations (run with `parallel`) execute once per run.
        let top_level = parallel;
        if let (Some(group), true) = (self.replayed_scramble, top_level) {
            let recorded = self.scramble_means.lock().expect("scramble means lock");
            let means = recorded[block.id].as_ref().ok_or_else(|| EvalError::new("a replayed expectation without a recorded run"))?;
            for (slot, &value) in block.dst.iter().zip(&means[group % means.len()]) {
                registers[*slot] = D::from(value);
            }
            return Ok(());
        }
        let n = table.len();
        let record = top_level && D::NDERIV == 0;
        let groups = table.groups.max(1);
        let per_group = n / groups;
        let width = block.result.len() + 1;
        // Returns the sums of weight * result, and per scramble group (when recording) the
        // f64 sums of weight * result and of the rule's weights: a run on one group alone
        // normalises by the latter.
        let accumulate = |range: std::ops::Range<usize>, registers: &mut [D]| -> Result<ChunkSums<D>, EvalError> {
            let mut sums = vec![D::from(0.0); block.result.len()];
            let mut group_sums = if record { vec![0.0; groups * width] } else { Vec::new() };
            for i in range {
                for (slot, &value) in block.node_slots.iter().zip(table.node(i)) {
                    registers[*slot] = D::from(value);
                }
                self.run_block::<D, S>(&block.body, registers, node * table.full_len + table.first_index + i, false)?;
                let mut weight = D::from(table.weights[i]);
                if let Some(w) = block.weight {
                    weight *= registers[w];
                }
                for (sum, slot) in sums.iter_mut().zip(&block.result) {
                    *sum += weight * registers[*slot];
                }
                if record {
                    let row = &mut group_sums[(i / per_group).min(groups - 1) * width..][..width];
                    for (sum, slot) in row.iter_mut().zip(&block.result) {
                        *sum += weight.re() * registers[*slot].re();
                    }
                    row[width - 1] += table.weights[i];
                }
            }
            Ok((sums, group_sums))
        };
        let sums = if parallel && n >= 2 * PARALLEL_CHUNK {
            let chunks: Vec<std::ops::Range<usize>> =
                (0..n).step_by(PARALLEL_CHUNK).map(|s| s..(s + PARALLEL_CHUNK).min(n)).collect();
            let partial: Result<Vec<ChunkSums<D>>, EvalError> = chunks
                .into_par_iter()
                .map(|range| {
                    let mut local = registers.to_vec();
                    accumulate(range, &mut local)
                })
                .collect();
            // Summed in chunk order: the same bits whatever the number of threads.
            let mut sums = vec![D::from(0.0); block.result.len()];
            let mut group_sums = if record { vec![0.0; groups * width] } else { Vec::new() };
            for (chunk, chunk_groups) in partial? {
                for (s, c) in sums.iter_mut().zip(chunk) {
                    *s += c;
                }
                for (s, c) in group_sums.iter_mut().zip(chunk_groups) {
                    *s += c;
                }
            }
            (sums, group_sums)
        } else {
            accumulate(0..n, registers)?
        };
        let (sums, group_sums) = sums;
        if record {
            let means = if groups == 1 {
                vec![sums.iter().map(|s| s.re()).collect()]
            } else {
                group_sums.chunks(width).map(|row| row[..width - 1].iter().map(|s| s / row[width - 1]).collect()).collect()
            };
            self.scramble_means.lock().expect("scramble means lock")[block.id] = Some(means);
        }
        for (slot, value) in block.dst.iter().zip(sums) {
            registers[*slot] = value;
        }
        Ok(())
    }

    fn minimize<D: Number, S: Interpreter<D>>(&self, block: &MinimizeBlock, registers: &mut [D], node: usize) -> Result<(), EvalError> {
        let cache = &self.caches[block.id];
        let minimizer = inner::minimize(block, registers, cache, node, self.search())?;
        // Only the minimum value at first order: the envelope theorem at the minimiser (exact
        // to second order in the last residual, see `inner::Minimum`) replaces the lift.
        let lifted = if D::NDERIV == 1 && block.dst_argument.is_none() {
            minimizer.point.iter().map(|&v| D::from(v)).collect()
        } else {
            inner::lift(block, registers, &minimizer)?
        };
        if let Some(dst) = block.dst_value {
            let mut local = inner::local_registers(block, registers, |v| v);
            for (slot, value) in block.local.variable.iter().zip(&lifted) {
                local[*slot] = *value;
            }
            S::run(&block.local.body, &mut local)?;
            registers[dst] = local[block.local.objective];
        }
        if let Some(dst) = &block.dst_argument {
            for (slot, value) in dst.iter().zip(&lifted) {
                registers[*slot] = *value;
            }
        }
        Ok(())
    }

    /// Second derivatives of the block's body at its point by hyper-dual passes of `B`
    /// directions each, `B` the variable's size up to four (a minimisation in the body
    /// contributes its exact implicit-function correction). Values only: the result carries
    /// no derivatives.
    fn hessian<D: Number>(&self, block: &HessianBlock, registers: &mut [D], node: usize) -> Result<(), EvalError> {
        if D::NDERIV != 0 {
            return Err(EvalError::new("`hessian` evaluated with derivatives (it is allowed only in observables)"));
        }
        let k = block.local.variable.len();
        let point: Vec<f64> = block.point.iter().map(|s| registers[*s].re()).collect();
        let inputs: Vec<(usize, f64)> = block.local.inputs.iter().map(|(outer, inner)| (*inner, registers[*outer].re())).collect();
        let result = match k {
            1 => self.hessian_in_blocks::<1>(block, &point, &inputs, node)?,
            2 => self.hessian_in_blocks::<2>(block, &point, &inputs, node)?,
            3 => self.hessian_in_blocks::<3>(block, &point, &inputs, node)?,
            _ => self.hessian_in_blocks::<4>(block, &point, &inputs, node)?,
        };
        for (slot, value) in block.dst.iter().zip(result) {
            registers[*slot] = D::from(value);
        }
        Ok(())
    }

    /// The k x k Hessian, row-major, from blocks of B x B entries on and above the diagonal.
    fn hessian_in_blocks<const B: usize>(&self, block: &HessianBlock, point: &[f64], inputs: &[(usize, f64)], node: usize) -> Result<Vec<f64>, EvalError> {
        type Passes<const B: usize> = HyperDualVec<f64, nalgebra::Const<B>, nalgebra::Const<B>>;
        let k = point.len();
        let mut local = vec![Passes::<B>::from_re(0.0); block.local.local_count];
        for &(inner, value) in inputs {
            local[inner] = Passes::<B>::from_re(value);
        }
        let mut result = vec![0.0; k * k];
        let starts: Vec<usize> = (0..k).step_by(B).collect();
        for (row_index, &row_start) in starts.iter().enumerate() {
            // The Hessian is symmetric: blocks on and above the diagonal suffice.
            for &col_start in &starts[row_index..] {
                for (i, slot) in block.local.variable.iter().enumerate() {
                    let mut number = Passes::<B>::from_re(point[i]);
                    if (row_start..row_start + B).contains(&i) {
                        number = number.derivative1(i - row_start);
                    }
                    if (col_start..col_start + B).contains(&i) {
                        number = number.derivative2(i - col_start);
                    }
                    local[*slot] = number;
                }
                self.run_block::<Passes<B>, Generic>(&block.local.body, &mut local, node, false)?;
                let second = local[block.local.objective].eps1eps2.unwrap_generic(nalgebra::Const::<B>, nalgebra::Const::<B>);
                for a in 0..B.min(k - row_start) {
                    for b in 0..B.min(k - col_start) {
                        let (i, j) = (row_start + a, col_start + b);
                        result[i * k + j] = second[(a, b)];
                        result[j * k + i] = second[(a, b)];
                    }
                }
            }
        }
        Ok(result)
    }

    /// The program cut down to scramble `group` of every multi-scramble rule, to run again
    /// (where [`Self::replay_on_scramble`] cannot replay a nested expectation).
    /// Run at the values of this evaluator's last (exhaustive) run, the cut-down program
    /// shares its minimiser caches, which hold the global minimisers at every node, and only
    /// tracks them: the same minima, without searching again.
    pub fn scramble_at_last_point(&self, group: usize) -> Evaluator {
        let tables = self.restricted_tables(group);
        Evaluator {
            program: self.program.clone(),
            tables,
            caches: Arc::clone(&self.caches),
            search: AtomicU8::new(Search::Tracked as u8),
            scramble_means: Arc::new(Mutex::new(vec![None; self.program.expect_count])),
            replayed_scramble: None,
        }
    }

    /// The last f64 run on scramble `group` alone, replayed from the recorded means of the
    /// top-level expectations (see `scramble_means`); what it computes is what
    /// [`Self::scramble_at_last_point`] computes, without looping over nodes. `None` when the
    /// program has an expectation with several scrambles below the top level (it would have
    /// to be cut down inside its enclosing loop) or when no run was recorded.
    pub fn replay_on_scramble(&self, group: usize) -> Option<Evaluator> {
        let nested_scrambles = |instr: &Instr| {
            let mut found = false;
            visit_nested_expectations(instr, &mut |block| found |= self.tables[block.id].as_ref().is_some_and(|t| t.groups > 1));
            found
        };
        if self.program.instrs.iter().any(nested_scrambles) {
            return None;
        }
        let recorded = self.scramble_means.lock().expect("scramble means lock");
        let complete = self.program.instrs.iter().all(|instr| match instr {
            Instr::Expect(block) => recorded[block.id].is_some(),
            _ => true,
        });
        if !complete {
            return None;
        }
        Some(Evaluator {
            program: self.program.clone(),
            tables: self.tables.clone(),
            caches: Arc::clone(&self.caches),
            search: AtomicU8::new(Search::Tracked as u8),
            scramble_means: Arc::clone(&self.scramble_means),
            replayed_scramble: Some(group),
        })
    }

    /// The node tables with every multi-scramble rule cut down to scramble `group`, reweighted
    /// to a rule of its own.
    pub fn restricted_tables(&self, group: usize) -> Vec<Option<NodeTable>> {
        self
            .tables
            .iter()
            .map(|t| {
                let t = t.as_ref()?;
                if t.groups <= 1 {
                    return Some(t.clone());
                }
                let per = t.len() / t.groups;
                let start = (group % t.groups) * per;
                Some(NodeTable {
                    dimension: t.dimension,
                    nodes: t.nodes[start * t.dimension..(start + per) * t.dimension].to_vec(),
                    weights: vec![1.0 / per as f64; per],
                    groups: 1,
                    first_index: t.first_index + start,
                    full_len: t.full_len,
                })
            })
            .collect()
    }

    /// Largest number of independent scrambles among the expectations.
    pub fn scramble_groups(&self) -> usize {
        self.tables.iter().flatten().map(|t| t.groups).max().unwrap_or(1)
    }
}

/// Calls `visit` on every expectation nested inside `instr` (not on `instr` itself).
fn visit_nested_expectations(instr: &Instr, visit: &mut dyn FnMut(&ExpectBlock)) {
    let body = match instr {
        Instr::Expect(block) => &block.body,
        Instr::Minimize(block) => &block.local.body,
        Instr::Hessian(block) => &block.local.body,
        _ => return,
    };
    for inner in body {
        if let Instr::Expect(block) = inner {
            visit(block);
        }
        visit_nested_expectations(inner, visit);
    }
}

/// The node table of every expectation in `instrs`, nested ones included, from `table_of`.
fn collect_tables(instrs: &[Instr], tables: &mut [Option<NodeTable>], table_of: &dyn Fn(&ExpectBlock) -> NodeTable) {
    for instr in instrs {
        match instr {
            Instr::Expect(block) => {
                tables[block.id] = Some(table_of(block));
                collect_tables(&block.body, tables, table_of);
            }
            Instr::Minimize(block) => collect_tables(&block.local.body, tables, table_of),
            Instr::Hessian(block) => collect_tables(&block.local.body, tables, table_of),
            _ => {}
        }
    }
}

/// How plain instructions (no expectation, no minimisation) run on one number type: the
/// generic interpreter, or one specialised to that type (`first_order`).
pub trait Interpreter<D> {
    fn step(instr: &Instr, registers: &mut [D]) -> Result<(), EvalError>;

    /// A tape without expectations or minimisations (the body of a minimisation).
    fn run(instrs: &[Instr], registers: &mut [D]) -> Result<(), EvalError> {
        for instr in instrs {
            Self::step(instr, registers)?;
        }
        Ok(())
    }
}

/// num-dual's own arithmetic, for every number type.
pub struct Generic;

impl<D: Number> Interpreter<D> for Generic {
    #[inline(always)]
    fn step(instr: &Instr, registers: &mut [D]) -> Result<(), EvalError> {
        step(instr, registers)
    }
}

/// A tape without expectations or minimisations (the body of a minimisation).
pub fn run_plain<T: Number>(instrs: &[Instr], registers: &mut [T]) -> Result<(), EvalError> {
    run_plain_any(instrs, registers)
}

/// `run_plain` for number types that need not be `Send + Sync`.
pub fn run_plain_any<T: DualNum<Primitive = f64> + Copy + RefArith>(instrs: &[Instr], registers: &mut [T]) -> Result<(), EvalError> {
    for instr in instrs {
        step(instr, registers)?;
    }
    Ok(())
}

pub(super) fn step<T: DualNum<Primitive = f64> + Copy + RefArith>(instr: &Instr, r: &mut [T]) -> Result<(), EvalError> {
    match instr {
        Instr::Const { dst, value } => r[*dst] = T::from(*value),
        Instr::Copy { dst, src } => r[*dst] = r[*src],
        Instr::Unary { op, dst, src } => r[*dst] = apply_unary_ref(*op, &r[*src]),
        Instr::Binary { op, dst, left, right } => r[*dst] = apply_binary_ref(*op, &r[*left], &r[*right]),
        Instr::PowI { dst, src, exponent } => r[*dst] = r[*src].powi(*exponent),
        Instr::LogSumExp { dst, src } => {
            let values: Vec<T> = src.iter().map(|s| r[*s]).collect();
            r[*dst] = special::logsumexp(&values);
        }
        Instr::Matrix { op, size, src, dst } => {
            let n = *size;
            let m: Vec<T> = src.iter().map(|s| r[*s]).collect();
            let failed = |what: &str| {
                // Four digits say which entry broke the factorisation; more would be noise.
                let rows: Vec<String> = m
                    .chunks(n)
                    .map(|row| row.iter().map(|v| format!("{:.4e}", v.re())).collect::<Vec<_>>().join(", "))
                    .collect();
                EvalError::new(format!("{what} of a {n}x{n} matrix failed (matrix [[{}]])", rows.join("], [")))
            };
            let out: Vec<T> = match op {
                MatrixFn::Inverse => linalg::inverse(&m, n).ok_or_else(|| failed("inverse"))?,
                MatrixFn::Cholesky => linalg::cholesky(&m, n).ok_or_else(|| failed("Cholesky factorisation (not positive definite)"))?,
                MatrixFn::SqrtSymmetric => linalg::sqrt_symmetric(&m, n).ok_or_else(|| failed("square root"))?,
                MatrixFn::LogDet => vec![linalg::log_determinant(&m, n).ok_or_else(|| failed("log-determinant (singular)"))?],
                MatrixFn::Det => vec![linalg::determinant(&m, n)],
                MatrixFn::EigenvaluesSymmetric => linalg::eigenvalues_symmetric(&m, n),
            };
            for (slot, value) in dst.iter().zip(out) {
                r[*slot] = value;
            }
        }
        Instr::Expect(_) | Instr::Minimize(_) | Instr::Hessian(_) => {
            return Err(EvalError::new("an expectation, minimisation or hessian inside a minimisation body"));
        }
    }
    Ok(())
}

/// Arithmetic on borrowed operands. Second-order duals are a few hundred bytes: passing
/// them by value copies more memory than the arithmetic touches. num-dual's by-value
/// operators forward to these, so the results are the same bits.
pub trait RefArith: Sized {
    fn add_ref(&self, other: &Self) -> Self;
    fn sub_ref(&self, other: &Self) -> Self;
    fn mul_ref(&self, other: &Self) -> Self;
    fn div_ref(&self, other: &Self) -> Self;
    fn neg_ref(&self) -> Self;
}

impl<T> RefArith for T
where
    for<'a> &'a T: Add<&'a T, Output = T> + Sub<&'a T, Output = T> + Mul<&'a T, Output = T> + Div<&'a T, Output = T> + Neg<Output = T>,
{
    #[inline(always)]
    fn add_ref(&self, other: &Self) -> Self {
        self + other
    }
    #[inline(always)]
    fn sub_ref(&self, other: &Self) -> Self {
        self - other
    }
    #[inline(always)]
    fn mul_ref(&self, other: &Self) -> Self {
        self * other
    }
    #[inline(always)]
    fn div_ref(&self, other: &Self) -> Self {
        self / other
    }
    #[inline(always)]
    fn neg_ref(&self) -> Self {
        -self
    }
}

pub fn apply_binary<T: DualNum<Primitive = f64> + Copy + RefArith>(op: BinaryFn, a: T, b: T) -> T {
    apply_binary_ref(op, &a, &b)
}

#[inline(always)]
fn apply_binary_ref<T: DualNum<Primitive = f64> + Copy + RefArith>(op: BinaryFn, a: &T, b: &T) -> T {
    match op {
        BinaryFn::Add => a.add_ref(b),
        BinaryFn::Sub => a.sub_ref(b),
        BinaryFn::Mul => a.mul_ref(b),
        BinaryFn::Div => a.div_ref(b),
        BinaryFn::Pow => a.powd(*b),
        BinaryFn::Max => {
            if a.re() >= b.re() {
                *a
            } else {
                *b
            }
        }
        BinaryFn::Min => {
            if a.re() <= b.re() {
                *a
            } else {
                *b
            }
        }
    }
}

pub fn apply_unary<T: DualNum<Primitive = f64> + Copy + RefArith>(op: UnaryFn, x: T) -> T {
    apply_unary_ref(op, &x)
}

#[inline(always)]
fn apply_unary_ref<T: DualNum<Primitive = f64> + Copy + RefArith>(op: UnaryFn, x: &T) -> T {
    match op {
        UnaryFn::Neg => x.neg_ref(),
        UnaryFn::Exp => x.exp(),
        UnaryFn::Ln => x.ln(),
        UnaryFn::Ln1p => x.ln_1p(),
        UnaryFn::Sqrt => x.sqrt(),
        UnaryFn::Abs => {
            if x.re() < 0.0 {
                x.neg_ref()
            } else {
                *x
            }
        }
        UnaryFn::Erf => special::erf(*x),
        UnaryFn::Erfc => special::erfc(*x),
        UnaryFn::GaussianTail => special::gaussian_tail(*x),
        UnaryFn::LogGaussianTail => special::log_gaussian_tail(*x),
        UnaryFn::GaussianPdf => special::gaussian_pdf(*x),
        UnaryFn::GaussianCdf => special::gaussian_cdf(*x),
        UnaryFn::Sigmoid => special::sigmoid(*x),
        UnaryFn::LogSigmoid => special::log_sigmoid(*x),
        UnaryFn::Softplus => special::softplus(*x),
        UnaryFn::Tanh => x.tanh(),
        UnaryFn::LogCosh => special::log_cosh(*x),
        UnaryFn::Sin => x.sin(),
        UnaryFn::Cos => x.cos(),
        UnaryFn::Step => T::from(if x.re() > 0.0 { 1.0 } else { 0.0 }),
        UnaryFn::Sign => T::from(if x.re() > 0.0 {
            1.0
        } else if x.re() < 0.0 {
            -1.0
        } else {
            0.0
        }),
    }
}
