//! Inner minimisation `min_h F(h; p)` (Moreau envelopes, proximal operators).
//! The minimiser is found in f64: guarded Newton (Hessian eigenvalues replaced by their
//! absolute values, floored) with backtracking, from every declared start, zero and the
//! previous minimiser at the same integration node; the lowest value wins. It is then
//! lifted into the caller's number type by one implicit-function step
//! `h = h* - F_hh^-1 (grad_h F(h*, p) - its real part)`, which gives the minimiser's exact
//! first derivatives; the minimum value's derivatives follow (envelope theorem at first
//! order, the IFT correction at second order). Iterations are never differentiated.
//! Variables of up to four entries use fixed-size vectors and matrices, so the Newton loop,
//! which runs at every integration node, allocates nothing.

use nalgebra::allocator::Allocator;
use nalgebra::{Const, DMatrix, DVector, DefaultAllocator, Dim, Dyn, OMatrix, OVector, SymmetricEigen, U1};
use num_dual::{Dual, Dual2SVec64, DualSVec, HyperDual64};

use super::second_order::SecondOrder;
use super::tape::{run_plain, Interpreter, MinimizerCache};
use super::{EvalError, Number};
use crate::ir::MinimizeBlock;

const MAX_NEWTON_STEPS: usize = 100;
/// A plain Newton step at most this long (relative to the point's scale) ends the iteration:
/// `minimize` takes it, and quadratic convergence puts the result within ~step^2 of the
/// minimiser.
const FINAL_NEWTON_STEP: f64 = 1e-7;

type Point<K> = OVector<f64, K>;
type Square<K> = OMatrix<f64, K, K>;

/// The dimension of an inner variable, with the number type that gives the objective's
/// value, gradient and Hessian in one go.
trait Dimension: Dim
where
    DefaultAllocator: Allocator<Self> + Allocator<Self, Self>,
{
    type Registers;
    fn registers(plain: &[f64]) -> Self::Registers;
    fn second_order(block: &MinimizeBlock, registers: &mut Self::Registers, h: &Point<Self>) -> Result<(f64, Point<Self>, Square<Self>), EvalError>;
}

/// Small k: one pass in second-order vector duals.
impl<const K: usize> Dimension for Const<K> {
    type Registers = Vec<Dual2SVec64<K>>;

    fn registers(plain: &[f64]) -> Self::Registers {
        plain.iter().map(|&v| Dual2SVec64::from_re(v)).collect()
    }

    fn second_order(block: &MinimizeBlock, registers: &mut Self::Registers, h: &Point<Self>) -> Result<(f64, Point<Self>, Square<Self>), EvalError> {
        for (i, (slot, &v)) in block.local.variable.iter().zip(h.iter()).enumerate() {
            registers[*slot] = Dual2SVec64::<K>::from_re(v).derivative(i);
        }
        SecondOrder::run(&block.local.body, registers)?;
        let f = &registers[block.local.objective];
        let gradient = f.v1.unwrap_generic(U1, Const::<K>).transpose();
        let hessian = f.v2.unwrap_generic(Const::<K>, Const::<K>);
        Ok((f.re, gradient, hessian))
    }
}

/// Larger k: k(k+1)/2 hyper-dual passes.
impl Dimension for Dyn {
    type Registers = Vec<HyperDual64>;

    fn registers(plain: &[f64]) -> Self::Registers {
        plain.iter().map(|&v| HyperDual64::from(v)).collect()
    }

    fn second_order(block: &MinimizeBlock, registers: &mut Self::Registers, h: &Point<Self>) -> Result<(f64, Point<Self>, Square<Self>), EvalError> {
        let k = h.len();
        let mut gradient = DVector::zeros(k);
        let mut hessian = DMatrix::zeros(k, k);
        let mut value = 0.0;
        for i in 0..k {
            for j in i..k {
                for (d, (slot, &v)) in block.local.variable.iter().zip(h.iter()).enumerate() {
                    let e1 = if d == i { 1.0 } else { 0.0 };
                    let e2 = if d == j { 1.0 } else { 0.0 };
                    registers[*slot] = HyperDual64::new(v, e1, e2, 0.0);
                }
                run_plain(&block.local.body, registers)?;
                let f = registers[block.local.objective];
                value = f.re;
                if i == j {
                    gradient[i] = f.eps1;
                }
                hessian[(i, j)] = f.eps1eps2;
                hessian[(j, i)] = f.eps1eps2;
            }
        }
        Ok((value, gradient, hessian))
    }
}

/// The f64 objective of one minimisation at fixed outer inputs.
struct Objective<'a, K: Dimension>
where
    DefaultAllocator: Allocator<K> + Allocator<K, K>,
{
    block: &'a MinimizeBlock,
    /// Local register file of the body (inputs set, f64).
    plain: Vec<f64>,
    /// The same register file in the number type of `second_order`, made on first use and
    /// kept: the inputs do not change, and the body overwrites every temporary it reads.
    dual: Option<K::Registers>,
}

/// A local register file for a minimisation body, inputs copied from the enclosing scope.
pub fn local_registers<D: Number, T: Number>(block: &MinimizeBlock, outer: &[D], convert: impl Fn(D) -> T) -> Vec<T> {
    let mut local = vec![T::from(0.0); block.local.local_count];
    for &(outer_slot, local_slot) in &block.local.inputs {
        local[local_slot] = convert(outer[outer_slot]);
    }
    local
}

impl<'a, K: Dimension> Objective<'a, K>
where
    DefaultAllocator: Allocator<K> + Allocator<K, K>,
{
    fn new<D: Number>(block: &'a MinimizeBlock, outer: &[D]) -> Self {
        let plain = local_registers(block, outer, |v| v.re());
        Objective { block, plain, dual: None }
    }

    fn value(&mut self, h: &Point<K>) -> Result<f64, EvalError> {
        for (slot, &v) in self.block.local.variable.iter().zip(h.iter()) {
            self.plain[*slot] = v;
        }
        run_plain(&self.block.local.body, &mut self.plain)?;
        Ok(self.plain[self.block.local.objective])
    }

    /// Value, gradient and Hessian.
    fn second_order(&mut self, h: &Point<K>) -> Result<(f64, Point<K>, Square<K>), EvalError> {
        let plain = &self.plain;
        let registers = self.dual.get_or_insert_with(|| K::registers(plain));
        K::second_order(self.block, registers, h)
    }
}

/// Newton direction with the Hessian made positive definite (|eigenvalues|, floored), and
/// whether the Hessian was positive definite and well conditioned (a plain Newton step).
fn guarded_direction<K: Dimension>(gradient: &Point<K>, hessian: &Square<K>) -> (Point<K>, bool)
where
    DefaultAllocator: Allocator<K> + Allocator<K, K>,
{
    if let Some(cholesky) = well_conditioned_cholesky(hessian) {
        return (-cholesky.solve(gradient), true);
    }
    // Rare (a non-convex region): the eigendecomposition in dynamic storage.
    let (rows, _) = hessian.shape_generic();
    let eigen = SymmetricEigen::<f64, Dyn>::new(DMatrix::from_iterator(hessian.nrows(), hessian.ncols(), hessian.iter().copied()));
    let largest = eigen.eigenvalues.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = (1e-8 * largest).max(1e-12);
    let projected: DVector<f64> = eigen.eigenvectors.transpose() * DVector::from_iterator(gradient.len(), gradient.iter().copied());
    let scaled = DVector::from_iterator(
        projected.len(),
        projected.iter().zip(eigen.eigenvalues.iter()).map(|(p, l)| -p / l.abs().max(floor)),
    );
    let direction: DVector<f64> = &eigen.eigenvectors * scaled;
    (Point::<K>::from_iterator_generic(rows, U1, direction.iter().copied()), false)
}

/// The Cholesky factor of a positive definite Hessian whose pivots span less than four
/// decades (the common case, where no eigendecomposition is needed).
fn well_conditioned_cholesky<K: Dimension>(hessian: &Square<K>) -> Option<nalgebra::Cholesky<f64, K>>
where
    DefaultAllocator: Allocator<K> + Allocator<K, K>,
{
    let cholesky = hessian.clone().cholesky()?;
    let diagonal = cholesky.l_dirty().diagonal();
    (diagonal.min() > 1e-4 * diagonal.max()).then_some(cholesky)
}

struct Local<K: Dimension>
where
    DefaultAllocator: Allocator<K> + Allocator<K, K>,
{
    point: Point<K>,
    value: f64,
    gradient: Point<K>,
    gradient_norm: f64,
    /// Hessian at `point`.
    hessian: Square<K>,
    /// Stationary to working precision: a small gradient, or a Newton step that would lower
    /// the objective by less than its rounding error (flat objectives, e.g. a large V).
    converged: bool,
}

/// Newton from `start`; `None` once a full step lands next to one of the `known` minimisers
/// (the run is inside that minimiser's basin and would converge to it).
fn newton<K: Dimension>(objective: &mut Objective<K>, start: &Point<K>, known: &[Point<K>]) -> Result<Option<Local<K>>, EvalError>
where
    DefaultAllocator: Allocator<K> + Allocator<K, K>,
{
    let mut x = start.clone();
    // Value, gradient and Hessian at x when the step that reached x already computed them.
    let mut evaluated = None;
    for _ in 0..MAX_NEWTON_STEPS {
        let (f, g, h) = match evaluated.take() {
            Some(values) => values,
            None => objective.second_order(&x)?,
        };
        let gradient_norm = g.amax();
        if !f.is_finite() || gradient_norm <= 1e-11 * (1.0 + f.abs()) {
            return Ok(Some(Local { point: x, value: f, gradient: g, gradient_norm, hessian: h, converged: f.is_finite() }));
        }
        let (direction, plain_newton) = guarded_direction(&g, &h);
        let slope = g.dot(&direction);
        let scale = 1.0 + x.amax();
        // Flat to rounding, or inside the quadratic basin with a step so small that the
        // closing Newton step of `minimize` leaves an error of order step^2, below 1e-14.
        if -slope <= 1e-14 * (1.0 + f.abs()) || (plain_newton && direction.amax() <= FINAL_NEWTON_STEP * scale) {
            return Ok(Some(Local { point: x, value: f, gradient: g, gradient_norm, hessian: h, converged: true }));
        }
        let sufficient = |value: f64, step: f64| value <= f + 1e-4 * step * slope;
        let full = &x + &direction;
        if known.iter().any(|p| close(&full, p)) {
            if sufficient(objective.value(&full)?, 1.0) {
                return Ok(None);
            }
        } else {
            // Full steps are usually accepted: test one with the second-order pass that the
            // next iteration needs anyway, instead of a separate value pass.
            let at_full = objective.second_order(&full)?;
            if sufficient(at_full.0, 1.0) {
                x = full;
                evaluated = Some(at_full);
                if direction.amax() <= 1e-15 * scale {
                    break;
                }
                continue;
            }
        }
        let mut step = 0.5;
        let mut accepted = false;
        while step > 1e-12 {
            let trial = &x + &direction * step;
            if sufficient(objective.value(&trial)?, step) {
                x = trial;
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            let converged = gradient_norm <= 1e-6 * (1.0 + f.abs());
            return Ok(Some(Local { point: x, value: f, gradient: g, gradient_norm, hessian: h, converged }));
        }
        if step * direction.amax() <= 1e-15 * scale {
            break;
        }
    }
    let (value, g, hessian) = match evaluated.take() {
        Some(values) => values,
        None => objective.second_order(&x)?,
    };
    let gradient_norm = g.amax();
    Ok(Some(Local { point: x, value, gradient: g, gradient_norm, hessian, converged: gradient_norm <= 1e-6 * (1.0 + value.abs()) }))
}

/// Within 1e-4 (relative) in every coordinate: a full Newton step this close to a strict
/// local minimiser stays in its basin.
fn close<K: Dimension>(x: &Point<K>, p: &Point<K>) -> bool
where
    DefaultAllocator: Allocator<K> + Allocator<K, K>,
{
    x.iter().zip(p.iter()).all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs()))
}

/// A minimiser, and the inverse of the objective's Hessian there (f64).
pub struct Minimum {
    /// One Newton step past the last point where the objective was evaluated, so accurate to
    /// second order in that point's residual gradient.
    pub point: Vec<f64>,
    /// Inverse Hessian (the pseudo-inverse where nearly singular) at the evaluated point.
    pub inverse_hessian: DMatrix<f64>,
}

/// How far an inner minimisation searches for the global minimiser at a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Search {
    /// Newton from the cached minimiser only (where there is one): follows its basin.
    Tracked = 0,
    /// Every start where the last full search found a competing basin within
    /// [`SCREEN_GAP`] of the winner (or found none yet); tracking elsewhere.
    Screened = 1,
    /// Every start at every node.
    Exhaustive = 2,
}

/// Relative gap `(second-lowest - lowest) / (1 + |lowest|)` between the two lowest basins
/// at a node's last full search below which a screened search looks again: a gap this wide
/// does not close while the outer iterate moves by the small steps of a nearly converged
/// iteration. A full exhaustive sweep still confirms every accepted fixed point.
pub const SCREEN_GAP: f64 = 1e-2;

/// Global minimiser in f64 over all starting points (or the tracked one, see [`Search`]).
pub fn minimize<D: Number>(
    block: &MinimizeBlock,
    registers: &[D],
    cache: &MinimizerCache,
    node: usize,
    search: Search,
) -> Result<Minimum, EvalError> {
    match block.local.variable.len() {
        1 => minimize_in(Const::<1>, block, registers, cache, node, search),
        2 => minimize_in(Const::<2>, block, registers, cache, node, search),
        3 => minimize_in(Const::<3>, block, registers, cache, node, search),
        4 => minimize_in(Const::<4>, block, registers, cache, node, search),
        k => minimize_in(Dyn(k), block, registers, cache, node, search),
    }
}

fn minimize_in<D: Number, K: Dimension>(
    dimension: K,
    block: &MinimizeBlock,
    registers: &[D],
    cache: &MinimizerCache,
    node: usize,
    search: Search,
) -> Result<Minimum, EvalError>
where
    DefaultAllocator: Allocator<K> + Allocator<K, K>,
{
    let point = |values: &mut dyn Iterator<Item = f64>| Point::<K>::from_iterator_generic(dimension, U1, values);
    let mut objective = Objective::<K>::new(block, registers);
    let mut starts: Vec<Point<K>> = Vec::with_capacity(block.starts.len() + 2);
    let cached = cache.get(node);
    let had_cache = cached.is_some();
    let tracking = had_cache
        && match search {
            Search::Tracked => true,
            Search::Screened => cache.gap(node) > SCREEN_GAP,
            Search::Exhaustive => false,
        };
    if let Some(previous) = cached {
        starts.push(point(&mut previous.into_iter()));
    }
    if !tracking {
        starts.extend(block.starts.iter().map(|slots| point(&mut slots.iter().map(|s| registers[*s].re()))));
        starts.push(Point::<K>::zeros_generic(dimension, U1));
    }
    let mut best: Option<Local<K>> = None;
    let mut best_start = 0;
    let mut found: Vec<Point<K>> = Vec::new();
    let mut found_values: Vec<f64> = Vec::new();
    for (index, start) in starts.iter().enumerate() {
        if start.iter().any(|v| !v.is_finite()) {
            continue;
        }
        let Some(local) = newton(&mut objective, start, &found)? else {
            continue;
        };
        if local.converged {
            found.push(local.point.clone());
            found_values.push(local.value);
        }
        // Strictly lower by a relative margin: ties keep the earlier (warm) start, so the
        // chosen branch does not flicker between equal minima.
        let better = match &best {
            None => local.value.is_finite(),
            Some(b) => local.value < b.value - 1e-13 * (1.0 + b.value.abs()),
        };
        if better {
            best = Some(local);
            best_start = index;
        }
    }
    if !tracking && (!had_cache || best_start != 0) {
        cache.count_switch();
    }
    let best = best.ok_or_else(|| EvalError::new("inner minimisation: the objective is not finite at any starting point"))?;
    if !tracking {
        // Runs that stopped next to the winner without the merge test are the same basin.
        let runner_up = found
            .iter()
            .zip(&found_values)
            .filter(|(point, _)| !close(point, &best.point))
            .map(|(_, v)| *v)
            .fold(f64::INFINITY, f64::min);
        cache.set_gap(node, (runner_up - best.value) / (1.0 + best.value.abs()));
    }
    let shown = best.point.as_slice();
    if best.point.iter().any(|v| v.abs() > 1e8) {
        return Err(EvalError::new(format!("inner minimisation: the objective looks unbounded below (h = {shown:?}, value {:.3e})", best.value)));
    }
    let inverse_hessian: Square<K> = match well_conditioned_cholesky(&best.hessian) {
        Some(cholesky) => cholesky.inverse(),
        None => {
            let k = best.hessian.nrows();
            let eigen = SymmetricEigen::<f64, Dyn>::new(DMatrix::from_iterator(k, k, best.hessian.iter().copied()));
            if eigen.eigenvalues.min() < -1e-8 * (1.0 + best.hessian.amax()) {
                return Err(EvalError::new(format!("inner minimisation: h = {shown:?} is a saddle or a maximum, not a minimum")));
            }
            let inverse = pseudo_inverse(&eigen);
            let (rows, columns) = best.hessian.shape_generic();
            Square::<K>::from_iterator_generic(rows, columns, inverse.iter().copied())
        }
    };
    if !best.converged {
        return Err(EvalError::new(format!(
            "inner minimisation did not converge: gradient norm {:.3e} at h = {shown:?}",
            best.gradient_norm
        )));
    }
    let minimizer = &best.point - &inverse_hessian * &best.gradient;
    cache.set(node, minimizer.as_slice());
    let k = minimizer.len();
    Ok(Minimum {
        point: minimizer.iter().copied().collect(),
        inverse_hessian: DMatrix::from_iterator(k, k, inverse_hessian.iter().copied()),
    })
}

/// The minimiser as a number of type D: exact first derivatives through one implicit-function step.
pub fn lift<D: Number>(block: &MinimizeBlock, registers: &[D], minimum: &Minimum) -> Result<Vec<D>, EvalError> {
    let minimizer = &minimum.point;
    if D::NDERIV == 0 {
        return Ok(minimizer.iter().map(|&v| D::from(v)).collect());
    }
    let k = minimizer.len();
    // Gradient in h of F(h*, p) with p carrying the caller's derivatives.
    let gradient = match k {
        1 => parameter_gradient::<D, 1>(block, registers, minimizer)?,
        2 => parameter_gradient::<D, 2>(block, registers, minimizer)?,
        3 => parameter_gradient::<D, 3>(block, registers, minimizer)?,
        4 => parameter_gradient::<D, 4>(block, registers, minimizer)?,
        _ => parameter_gradient_passes(block, registers, minimizer)?,
    };
    let inverse = &minimum.inverse_hessian;
    Ok((0..k)
        .map(|i| {
            let mut correction = D::from(0.0);
            for (j, g) in gradient.iter().enumerate() {
                correction += *g * inverse[(i, j)];
            }
            D::from(minimizer[i]) - correction
        })
        .collect())
}

/// Inverse of a symmetric positive semi-definite matrix, eigenvalues below 1e-10 of the
/// largest dropped.
fn pseudo_inverse(eigen: &SymmetricEigen<f64, nalgebra::Dyn>) -> DMatrix<f64> {
    let largest = eigen.eigenvalues.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = (1e-10 * largest).max(1e-14);
    &eigen.eigenvectors
        * DMatrix::from_diagonal(&eigen.eigenvalues.map(|l| if l.abs() < floor { 0.0 } else { 1.0 / l }))
        * eigen.eigenvectors.transpose()
}

/// dF/dh at the minimiser in D, all K directions in one pass of a vector dual over D.
fn parameter_gradient<D: Number, const K: usize>(block: &MinimizeBlock, registers: &[D], minimizer: &[f64]) -> Result<Vec<D>, EvalError> {
    let mut local: Vec<DualSVec<D, K>> = local_registers(block, registers, DualSVec::from_re);
    for (i, (slot, &v)) in block.local.variable.iter().zip(minimizer).enumerate() {
        local[*slot] = DualSVec::from_re(D::from(v)).derivative(i);
    }
    run_plain(&block.local.body, &mut local)?;
    let gradient = local[block.local.objective].eps.unwrap_generic(nalgebra::Const::<K>, nalgebra::U1);
    // Only the parameter dependence moves the minimiser; drop the real residual.
    Ok(gradient.iter().map(|g| *g - D::from(g.re())).collect())
}

/// `parameter_gradient` for larger k: one pass in Dual<D> per direction.
fn parameter_gradient_passes<D: Number>(block: &MinimizeBlock, registers: &[D], minimizer: &[f64]) -> Result<Vec<D>, EvalError> {
    let k = minimizer.len();
    let mut lifted_registers: Vec<Dual<D>> = local_registers(block, registers, Dual::from_re);
    let mut gradient: Vec<D> = Vec::with_capacity(k);
    for i in 0..k {
        for (d, (slot, &v)) in block.local.variable.iter().zip(minimizer).enumerate() {
            lifted_registers[*slot] = Dual::new(D::from(v), D::from(if d == i { 1.0 } else { 0.0 }));
        }
        run_plain(&block.local.body, &mut lifted_registers)?;
        let g = lifted_registers[block.local.objective].eps;
        gradient.push(g - D::from(g.re()));
    }
    Ok(gradient)
}
