//! Inner minimisation `min_h F(h; p)` (Moreau envelopes, proximal operators).
//! The minimiser is found in f64: guarded Newton (Hessian eigenvalues replaced by their
//! absolute values, floored) with backtracking, from every declared start, zero and the
//! previous minimiser at the same integration node; the lowest value wins. It is then
//! lifted into the caller's number type by one implicit-function step
//! `h = h* - F_hh^-1 (grad_h F(h*, p) - its real part)`, which gives the minimiser's exact
//! first derivatives; the minimum value's derivatives follow (envelope theorem at first
//! order, the IFT correction at second order). Iterations are never differentiated.

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use num_dual::{Dual, Dual2SVec64, DualSVec, HyperDual64};

use super::second_order;
use super::tape::{run_plain, MinimizerCache};
use super::{EvalError, Number};
use crate::ir::MinimizeBlock;

const MAX_NEWTON_STEPS: usize = 100;
/// A plain Newton step at most this long (relative to the point's scale) ends the iteration:
/// `minimize` takes it, and quadratic convergence puts the result within ~step^2 of the
/// minimiser.
const FINAL_NEWTON_STEP: f64 = 1e-7;

/// The f64 objective of one minimisation at fixed outer inputs.
struct Objective<'a> {
    block: &'a MinimizeBlock,
    /// Local register file of the body (inputs set, f64).
    plain: Vec<f64>,
    /// The same register file in the number type of `second_order`, made on first use and
    /// kept: the inputs do not change, and the body overwrites every temporary it reads.
    dual: Option<DualRegisters>,
}

/// Register files for value, gradient and Hessian in the variable's dimension.
enum DualRegisters {
    One(Vec<Dual2SVec64<1>>),
    Two(Vec<Dual2SVec64<2>>),
    Three(Vec<Dual2SVec64<3>>),
    Four(Vec<Dual2SVec64<4>>),
    Passes(Vec<HyperDual64>),
}

/// A local register file for a minimisation body, inputs copied from the enclosing scope.
pub fn local_registers<D: Number, T: Number>(block: &MinimizeBlock, outer: &[D], convert: impl Fn(D) -> T) -> Vec<T> {
    let mut local = vec![T::from(0.0); block.local_count];
    for &(outer_slot, local_slot) in &block.inputs {
        local[local_slot] = convert(outer[outer_slot]);
    }
    local
}

impl<'a> Objective<'a> {
    fn new<D: Number>(block: &'a MinimizeBlock, outer: &[D]) -> Self {
        let plain = local_registers(block, outer, |v| v.re());
        Objective { block, plain, dual: None }
    }

    fn value(&mut self, h: &[f64]) -> Result<f64, EvalError> {
        for (slot, &v) in self.block.variable.iter().zip(h) {
            self.plain[*slot] = v;
        }
        run_plain(&self.block.body, &mut self.plain)?;
        Ok(self.plain[self.block.objective])
    }

    /// Value, gradient and Hessian: one second-order vector-dual pass for small k, else
    /// k(k+1)/2 hyper-dual passes.
    fn second_order(&mut self, h: &[f64]) -> Result<(f64, DVector<f64>, DMatrix<f64>), EvalError> {
        let plain = &self.plain;
        let dual = self.dual.get_or_insert_with(|| match h.len() {
            1 => DualRegisters::One(plain.iter().map(|&v| Dual2SVec64::from_re(v)).collect()),
            2 => DualRegisters::Two(plain.iter().map(|&v| Dual2SVec64::from_re(v)).collect()),
            3 => DualRegisters::Three(plain.iter().map(|&v| Dual2SVec64::from_re(v)).collect()),
            4 => DualRegisters::Four(plain.iter().map(|&v| Dual2SVec64::from_re(v)).collect()),
            _ => DualRegisters::Passes(plain.iter().map(|&v| HyperDual64::from(v)).collect()),
        });
        match dual {
            DualRegisters::One(registers) => second_order_vector(self.block, registers, h),
            DualRegisters::Two(registers) => second_order_vector(self.block, registers, h),
            DualRegisters::Three(registers) => second_order_vector(self.block, registers, h),
            DualRegisters::Four(registers) => second_order_vector(self.block, registers, h),
            DualRegisters::Passes(registers) => second_order_passes(self.block, registers, h),
        }
    }
}

fn second_order_vector<const K: usize>(
    block: &MinimizeBlock,
    registers: &mut [Dual2SVec64<K>],
    h: &[f64],
) -> Result<(f64, DVector<f64>, DMatrix<f64>), EvalError> {
    for (i, (slot, &v)) in block.variable.iter().zip(h).enumerate() {
        registers[*slot] = Dual2SVec64::<K>::from_re(v).derivative(i);
    }
    second_order::run(&block.body, registers)?;
    let f = &registers[block.objective];
    let gradient = f.v1.unwrap_generic(nalgebra::U1, nalgebra::Const::<K>);
    let hessian = f.v2.unwrap_generic(nalgebra::Const::<K>, nalgebra::Const::<K>);
    Ok((f.re, DVector::from_iterator(K, gradient.iter().copied()), DMatrix::from_iterator(K, K, hessian.iter().copied())))
}

fn second_order_passes(
    block: &MinimizeBlock,
    registers: &mut [HyperDual64],
    h: &[f64],
) -> Result<(f64, DVector<f64>, DMatrix<f64>), EvalError> {
    let k = h.len();
    let mut gradient = DVector::zeros(k);
    let mut hessian = DMatrix::zeros(k, k);
    let mut value = 0.0;
    for i in 0..k {
        for j in i..k {
            for (d, (slot, &v)) in block.variable.iter().zip(h).enumerate() {
                let e1 = if d == i { 1.0 } else { 0.0 };
                let e2 = if d == j { 1.0 } else { 0.0 };
                registers[*slot] = HyperDual64::new(v, e1, e2, 0.0);
            }
            run_plain(&block.body, registers)?;
            let f = registers[block.objective];
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

/// Newton direction with the Hessian made positive definite (|eigenvalues|, floored), and
/// whether the Hessian was positive definite and well conditioned (a plain Newton step).
fn guarded_direction(gradient: &DVector<f64>, hessian: &DMatrix<f64>) -> (DVector<f64>, bool) {
    if let Some(cholesky) = well_conditioned_cholesky(hessian) {
        return (-cholesky.solve(gradient), true);
    }
    let eigen = SymmetricEigen::new(hessian.clone());
    let largest = eigen.eigenvalues.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = (1e-8 * largest).max(1e-12);
    let projected = eigen.eigenvectors.transpose() * gradient;
    let scaled = DVector::from_iterator(
        projected.len(),
        projected.iter().zip(eigen.eigenvalues.iter()).map(|(p, l)| -p / l.abs().max(floor)),
    );
    (&eigen.eigenvectors * scaled, false)
}

/// The Cholesky factor of a positive definite Hessian whose pivots span less than four
/// decades (the common case, where no eigendecomposition is needed).
fn well_conditioned_cholesky(hessian: &DMatrix<f64>) -> Option<nalgebra::Cholesky<f64, nalgebra::Dyn>> {
    let cholesky = hessian.clone().cholesky()?;
    let diagonal = cholesky.l_dirty().diagonal();
    (diagonal.min() > 1e-4 * diagonal.max()).then_some(cholesky)
}

struct Local {
    point: Vec<f64>,
    value: f64,
    gradient: DVector<f64>,
    gradient_norm: f64,
    /// Hessian at `point`.
    hessian: DMatrix<f64>,
    /// Stationary to working precision: a small gradient, or a Newton step that would lower
    /// the objective by less than its rounding error (flat objectives, e.g. a large V).
    converged: bool,
}

/// Newton from `start`; `None` once a full step lands next to one of the `known` minimisers
/// (the run is inside that minimiser's basin and would converge to it).
fn newton(objective: &mut Objective, start: &[f64], known: &[Vec<f64>]) -> Result<Option<Local>, EvalError> {
    let mut x = start.to_vec();
    for _ in 0..MAX_NEWTON_STEPS {
        let (f, g, h) = objective.second_order(&x)?;
        let gradient_norm = g.amax();
        if !f.is_finite() || gradient_norm <= 1e-11 * (1.0 + f.abs()) {
            return Ok(Some(Local { point: x, value: f, gradient: g, gradient_norm, hessian: h, converged: f.is_finite() }));
        }
        let (direction, plain_newton) = guarded_direction(&g, &h);
        let slope = g.dot(&direction);
        let scale = 1.0 + x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        // Flat to rounding, or inside the quadratic basin with a step so small that the
        // closing Newton step of `minimize` leaves an error of order step^2, below 1e-14.
        if -slope <= 1e-14 * (1.0 + f.abs()) || (plain_newton && direction.amax() <= FINAL_NEWTON_STEP * scale) {
            return Ok(Some(Local { point: x, value: f, gradient: g, gradient_norm, hessian: h, converged: true }));
        }
        let mut step = 1.0;
        let mut accepted = false;
        while step > 1e-12 {
            let trial: Vec<f64> = x.iter().zip(direction.iter()).map(|(a, d)| a + step * d).collect();
            let trial_value = objective.value(&trial)?;
            if trial_value <= f + 1e-4 * step * slope {
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
        if step == 1.0 && known.iter().any(|p| close(&x, p)) {
            return Ok(None);
        }
        let moved = step * direction.amax();
        if moved <= 1e-15 * scale {
            break;
        }
    }
    let (value, g, hessian) = objective.second_order(&x)?;
    let gradient_norm = g.amax();
    Ok(Some(Local { point: x, value, gradient: g, gradient_norm, hessian, converged: gradient_norm <= 1e-6 * (1.0 + value.abs()) }))
}

/// Within 1e-4 (relative) in every coordinate: a full Newton step this close to a strict
/// local minimiser stays in its basin.
fn close(x: &[f64], p: &[f64]) -> bool {
    x.iter().zip(p).all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs()))
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
    let k = block.variable.len();
    let mut objective = Objective::new(block, registers);
    let mut starts: Vec<Vec<f64>> = Vec::with_capacity(block.starts.len() + 2);
    let cached = cache.get(node);
    let had_cache = cached.is_some();
    let tracking = had_cache
        && match search {
            Search::Tracked => true,
            Search::Screened => cache.gap(node) > SCREEN_GAP,
            Search::Exhaustive => false,
        };
    if let Some(previous) = cached {
        starts.push(previous);
    }
    if !tracking {
        starts.extend(block.starts.iter().map(|slots| slots.iter().map(|s| registers[*s].re()).collect::<Vec<f64>>()));
        starts.push(vec![0.0; k]);
    }
    let mut best: Option<Local> = None;
    let mut best_start = 0;
    let mut found: Vec<Vec<f64>> = Vec::new();
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
    if best.point.iter().any(|v| v.abs() > 1e8) {
        return Err(EvalError::new(format!("inner minimisation: the objective looks unbounded below (h = {:?}, value {:.3e})", best.point, best.value)));
    }
    let inverse_hessian = match well_conditioned_cholesky(&best.hessian) {
        Some(cholesky) => cholesky.inverse(),
        None => {
            let eigen = SymmetricEigen::new(best.hessian.clone());
            if eigen.eigenvalues.min() < -1e-8 * (1.0 + best.hessian.amax()) {
                return Err(EvalError::new(format!("inner minimisation: h = {:?} is a saddle or a maximum, not a minimum", best.point)));
            }
            pseudo_inverse(&eigen)
        }
    };
    if !best.converged {
        return Err(EvalError::new(format!(
            "inner minimisation did not converge: gradient norm {:.3e} at h = {:?}",
            best.gradient_norm, best.point
        )));
    }
    let step = &inverse_hessian * &best.gradient;
    let point: Vec<f64> = best.point.iter().zip(step.iter()).map(|(h, s)| h - s).collect();
    cache.set(node, &point);
    Ok(Minimum { point, inverse_hessian })
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
    for (i, (slot, &v)) in block.variable.iter().zip(minimizer).enumerate() {
        local[*slot] = DualSVec::from_re(D::from(v)).derivative(i);
    }
    run_plain(&block.body, &mut local)?;
    let gradient = local[block.objective].eps.unwrap_generic(nalgebra::Const::<K>, nalgebra::U1);
    // Only the parameter dependence moves the minimiser; drop the real residual.
    Ok(gradient.iter().map(|g| *g - D::from(g.re())).collect())
}

/// `parameter_gradient` for larger k: one pass in Dual<D> per direction.
fn parameter_gradient_passes<D: Number>(block: &MinimizeBlock, registers: &[D], minimizer: &[f64]) -> Result<Vec<D>, EvalError> {
    let k = minimizer.len();
    let mut lifted_registers: Vec<Dual<D>> = local_registers(block, registers, Dual::from_re);
    let mut gradient: Vec<D> = Vec::with_capacity(k);
    for i in 0..k {
        for (d, (slot, &v)) in block.variable.iter().zip(minimizer).enumerate() {
            lifted_registers[*slot] = Dual::new(D::from(v), D::from(if d == i { 1.0 } else { 0.0 }));
        }
        run_plain(&block.body, &mut lifted_registers)?;
        let g = lifted_registers[block.objective].eps;
        gradient.push(g - D::from(g.re()));
    }
    Ok(gradient)
}
