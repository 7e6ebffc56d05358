//! The two saddle-point solvers, as argmin `Solver`s over `Vec<f64>` (argmin's own
//! backend; nalgebra 0.35 is used inside, since argmin-math supports only nalgebra <= 0.34
//! while num-dual needs 0.35).
//!
//! - `FixedPoint`: the field's alternating iteration. The conjugates are updated by solving
//!   dPhi/d(order) = 0 for them, the order parameters by solving dPhi/d(conjugate) = 0 for
//!   them. Both equations are affine in the variables being updated whenever the coupling
//!   between the groups is bilinear (the usual `m mh`, `q Vh` terms), so one linear solve
//!   with the coupling matrix d^2Phi/d(order)d(conjugate) is the exact update; damping mixes
//!   it with the previous iterate.
//! - `Newton`: Newton on grad Phi = 0 with the Hessian from second-order duals and a
//!   backtracking line search on |grad Phi|.

use argmin::core::{
    CostFunction, Error, Gradient, Hessian, IterState, Problem, Solver, State, TerminationReason, TerminationStatus, KV,
};
use nalgebra::{DMatrix, DVector};

use super::problem::SaddleProblem;
use crate::eval::Search;
use crate::syntax::Domain;
use crate::types::{CheckedModel, Shape};

/// argmin's view of the saddle problem: cost = Phi, gradient = grad Phi, Hessian.
pub struct Saddle<'a>(pub &'a SaddleProblem);

impl CostFunction for Saddle<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> Result<f64, Error> {
        Ok(self.0.energy(x)?.total)
    }
}

impl Gradient for Saddle<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> Result<Vec<f64>, Error> {
        Ok(self.0.gradient(x)?)
    }
}

impl Hessian for Saddle<'_> {
    type Param = Vec<f64>;
    type Hessian = Vec<Vec<f64>>;
    fn hessian(&self, x: &Vec<f64>) -> Result<Vec<Vec<f64>>, Error> {
        let h = self.0.hessian(x)?;
        Ok((0..h.nrows()).map(|i| h.row(i).iter().copied().collect()).collect())
    }
}

pub type SaddleState = IterState<Vec<f64>, Vec<f64>, (), Vec<Vec<f64>>, (), f64>;

/// Solve `a x = b` (least squares if `a` is not square or singular).
fn linear_solve(a: &DMatrix<f64>, b: &DVector<f64>) -> Option<DVector<f64>> {
    if a.is_square() {
        if let Some(x) = a.clone().lu().solve(b) {
            if x.iter().all(|v| v.is_finite()) {
                return Some(x);
            }
        }
    }
    a.clone().svd(true, true).solve(b, 1e-12).ok()
}

/// Smallest value a nonnegative unknown takes: at exactly 0, pathwise derivatives such as
/// d/dq E[f(sqrt(q) z)] become 0 * inf; at this value they are finite and equal their limit.
pub const NONNEGATIVE_FLOOR: f64 = 1e-200;

/// Smallest eigenvalue a `psd` matrix unknown keeps, like the floor of a positive scalar.
const PSD_FLOOR: f64 = 1e-10;

/// Keep entries inside their domains: positive quantities stay positive, and a symmetric
/// matrix declared `psd` is moved to the nearest matrix (Frobenius norm) whose eigenvalues are
/// at least [`PSD_FLOOR`]. Positive diagonals alone do not make a Gram matrix: an indefinite
/// response matrix V turns a Moreau envelope into a minimisation unbounded below.
pub fn project(x: &mut [f64], model: &CheckedModel) {
    for (v, d) in x.iter_mut().zip(&model.unknown_domains) {
        match d {
            Domain::Positive | Domain::Psd => *v = v.max(PSD_FLOOR),
            Domain::Nonnegative => *v = v.max(NONNEGATIVE_FLOOR),
            Domain::Unit => *v = v.clamp(0.0, 1.0),
            Domain::Real | Domain::Integer => {}
        }
    }
    for unknown in model.unknowns.iter().filter(|u| u.domain == Domain::Psd) {
        let Shape::Matrix(n, m) = unknown.shape else { continue };
        let symmetric = (0..n).all(|i| (0..n).all(|j| unknown.index[i * n + j] == unknown.index[j * n + i]));
        if n != m || n < 2 || !symmetric {
            continue;
        }
        let matrix = DMatrix::from_fn(n, n, |i, j| x[unknown.index[i * n + j]]);
        if !matrix.iter().all(|v| v.is_finite()) {
            continue;
        }
        let eigen = matrix.symmetric_eigen();
        if eigen.eigenvalues.iter().all(|&l| l >= PSD_FLOOR) {
            continue;
        }
        let clipped = DMatrix::from_diagonal(&eigen.eigenvalues.map(|l| l.max(PSD_FLOOR)));
        let projected = &eigen.eigenvectors * clipped * eigen.eigenvectors.transpose();
        for i in 0..n {
            for j in i..n {
                x[unknown.index[i * n + j]] = 0.5 * (projected[(i, j)] + projected[(j, i)]);
            }
        }
    }
}

/// Whether every entry already lies inside its domain (projection would not move it).
fn inside(x: &[f64], model: &CheckedModel) -> bool {
    let mut projected = x.to_vec();
    project(&mut projected, model);
    projected == x
}

/// Whether `x` lies within relative distance `tolerance` of `reference`, entry by entry:
/// `|x_i - reference_i| <= tolerance * (1 + |reference_i|)`.
pub fn relatively_close(reference: &[f64], x: &[f64], tolerance: f64) -> bool {
    reference.iter().zip(x).all(|(a, b)| (a - b).abs() <= tolerance * (1.0 + a.abs()))
}

/// Whether `accelerated` stays within one unit of scale, `1 + |x|`, of the plain image `plain`.
fn within_reach(accelerated: &[f64], plain: &[f64]) -> bool {
    accelerated.iter().zip(plain).all(|(a, p)| (a - p).abs() <= 1.0 + p.abs())
}

/// One sweep of the alternating iteration: conjugates from dPhi/d(order) = 0, then order
/// parameters from dPhi/d(conjugate) = 0, each mixed with weight `damping`.
pub fn alternating_update(saddle: &SaddleProblem, x: &mut [f64], damping: f64, projected: bool) -> Result<(), Error> {
    let gradient_orders = saddle.gradient_orders(x)?;
    let coupling = saddle.coupling(x)?;
    let g = DVector::from_iterator(saddle.orders.len(), saddle.orders.iter().map(|&i| gradient_orders[i]));
    let shift = linear_solve(&coupling, &(-g)).ok_or_else(|| Error::msg("singular coupling between order parameters and conjugates"))?;
    for (k, &i) in saddle.conjugates.iter().enumerate() {
        x[i] += damping * shift[k];
    }
    if projected {
        project(x, &saddle.model);
    }
    let gradient_conjugates = saddle.gradient_conjugates(x)?;
    let coupling = saddle.coupling(x)?;
    let g = DVector::from_iterator(saddle.conjugates.len(), saddle.conjugates.iter().map(|&i| gradient_conjugates[i]));
    let shift = linear_solve(&coupling.transpose(), &(-g)).ok_or_else(|| Error::msg("singular coupling between conjugates and order parameters"))?;
    for (k, &i) in saddle.orders.iter().enumerate() {
        x[i] += damping * shift[k];
    }
    if projected {
        project(x, &saddle.model);
    }
    Ok(())
}

/// Spectral radius of the undamped alternating iteration at a fixed point, from forward
/// differences of the map (first derivatives only: pathwise second derivatives are not
/// reliable where an unknown sits on its domain boundary). Steps point into the domain.
pub fn iteration_spectral_radius(saddle: &SaddleProblem, x: &[f64]) -> Result<f64, Error> {
    // Perturbations are tiny: inner minimisers are tracked from the cache.
    saddle.set_search(Search::Tracked);
    let radius = spectral_radius_tracked(saddle, x);
    saddle.set_search(Search::Exhaustive);
    radius
}

fn spectral_radius_tracked(saddle: &SaddleProblem, x: &[f64]) -> Result<f64, Error> {
    let n = x.len();
    let mut base = x.to_vec();
    alternating_update(saddle, &mut base, 1.0, false)?;
    let mut jacobian = DMatrix::zeros(n, n);
    for j in 0..n {
        let step = 1e-6 * (1.0 + x[j].abs());
        let mut shifted = x.to_vec();
        shifted[j] += step;
        alternating_update(saddle, &mut shifted, 1.0, false)?;
        for i in 0..n {
            jacobian[(i, j)] = (shifted[i] - base[i]) / step;
        }
    }
    if jacobian.iter().any(|v| !v.is_finite()) {
        return Err(Error::msg("non-finite iteration Jacobian"));
    }
    Ok(jacobian.complex_eigenvalues().iter().map(|z| z.norm()).fold(0.0, f64::max))
}

pub struct FixedPoint {
    pub damping: f64,
    pub tolerance: f64,
    /// Set once the tracked iteration has converged: from then on every sweep searches inner
    /// minimisers beyond the tracked basins (screened, and exhaustive to confirm).
    pub searching: bool,
    /// Whether the last sweep searched every start at every node: only such a sweep can
    /// confirm a fixed point.
    last_full: bool,
    /// Anderson acceleration depth (0: plain damped iteration).
    pub memory: usize,
    /// Whether exhaustive sweeps still run every 8 iterations.
    periodic: bool,
    /// Recent iterates and their images under the damped map.
    history: Vec<(Vec<f64>, Vec<f64>)>,
    /// The plain damped image behind the current (extrapolated) iterate: where to continue
    /// if the extrapolation left the region where the free energy can be evaluated.
    fallback: Option<Vec<f64>>,
    /// Smallest change since every sweep began to search, and the iterations since it last
    /// halved: a discontinuous exhaustive map can cycle without ever converging.
    best_exhaustive_change: f64,
    stalled_for: u64,
    /// Recent iterates of searching sweeps that had not settled, and the period once one came
    /// back to an earlier one: the searched map cycles among basins.
    searched_iterates: CycleDetector,
    cycle_period: Option<usize>,
    /// Fixed points other starts already reached at these params, and whether an iterate
    /// came within [`JOIN_DISTANCE`] of one (the start then stops early).
    pub known: Vec<Vec<f64>>,
    pub joined: bool,
}

/// Relative distance (max norm) at which a searched iterate is taken to have joined a
/// known fixed point: far below the spacing of distinct fixed points, far above the tolerance.
pub const JOIN_DISTANCE: f64 = 1e-4;

/// Exhaustive iterations without halving the best change before a start is given up as cycling.
const STALL_LIMIT: u64 = 50;

/// Relative distance at which a searched iterate repeats an earlier one (a cycle): rounding
/// level, far below any change the iteration still makes.
const CYCLE_DISTANCE: f64 = 1e-12;

/// Searched iterates remembered for cycle detection.
const CYCLE_MEMORY: usize = 64;

/// The last [`CYCLE_MEMORY`] iterates of a sequence, to tell when it returns to one of them.
#[derive(Default)]
struct CycleDetector {
    iterates: std::collections::VecDeque<Vec<f64>>,
}

impl CycleDetector {
    /// Records `x`; the period if `x` repeats a remembered iterate (the latest such one).
    fn period_after(&mut self, x: &[f64]) -> Option<usize> {
        let period = self.iterates.iter().rposition(|earlier| relatively_close(earlier, x, CYCLE_DISTANCE)).map(|at| self.iterates.len() - at);
        self.iterates.push_back(x.to_vec());
        if self.iterates.len() > CYCLE_MEMORY {
            self.iterates.pop_front();
        }
        period
    }
}

impl FixedPoint {
    pub fn new(damping: f64, tolerance: f64, memory: usize) -> Self {
        FixedPoint {
            damping,
            tolerance,
            searching: false,
            last_full: false,
            memory,
            periodic: true,
            history: Vec::new(),
            fallback: None,
            best_exhaustive_change: f64::INFINITY,
            stalled_for: 0,
            searched_iterates: CycleDetector::default(),
            cycle_period: None,
            known: Vec::new(),
            joined: false,
        }
    }

    /// Anderson (type II) extrapolation from the stored iterates: the combination of recent
    /// images whose residuals g(x) - x best cancel, in the least-squares sense.
    fn extrapolate(&self) -> Option<Vec<f64>> {
        let k = self.history.len();
        if k < 2 {
            return None;
        }
        let n = self.history[0].0.len();
        let residual = |i: usize| -> DVector<f64> {
            let (x, g) = &self.history[i];
            DVector::from_iterator(n, g.iter().zip(x).map(|(a, b)| a - b))
        };
        let last = residual(k - 1);
        let mut residual_steps = DMatrix::zeros(n, k - 1);
        let mut image_steps = DMatrix::zeros(n, k - 1);
        for j in 0..k - 1 {
            residual_steps.set_column(j, &(residual(j + 1) - residual(j)));
            let step = DVector::from_iterator(n, self.history[j + 1].1.iter().zip(&self.history[j].1).map(|(a, b)| a - b));
            image_steps.set_column(j, &step);
        }
        let gamma = residual_steps.svd(true, true).solve(&last, 1e-10).ok()?;
        let image = DVector::from_vec(self.history[k - 1].1.clone());
        let next = image - image_steps * gamma;
        next.iter().all(|v| v.is_finite()).then(|| next.iter().copied().collect())
    }
}

impl<'a> Solver<Saddle<'a>, SaddleState> for FixedPoint {
    fn name(&self) -> &str {
        "damped fixed point"
    }

    fn next_iter(&mut self, problem: &mut Problem<Saddle<'a>>, state: SaddleState) -> Result<(SaddleState, Option<KV>), Error> {
        let saddle = problem.problem.as_ref().expect("problem is set").0;
        let mut x = state.get_param().ok_or_else(|| Error::msg("no starting point"))?.clone();
        let mut previous = x.clone();
        // Inner minimisers are tracked from the cache (several times cheaper) and searched
        // from every start periodically. Once the tracked iteration has converged, every
        // further sweep searches: screened (every start only at nodes where a competing basin
        // was close) while the iterate still moves, exhaustive once it has settled, so the
        // accepted fixed point is one of the exhaustive map (a tracked minimiser can sit in a
        // basin that is no longer the lowest).
        let settled = state.get_cost() <= self.tolerance;
        if settled {
            self.searching = true;
        }
        let search = if self.searching {
            if settled { Search::Exhaustive } else { Search::Screened }
        } else if self.periodic && state.get_iter().is_multiple_of(8) {
            Search::Exhaustive
        } else {
            Search::Tracked
        };
        let searched = search != Search::Tracked;
        self.last_full = search == Search::Exhaustive;
        saddle.set_search(search);
        saddle.take_basin_switches();
        let mut updated = alternating_update(saddle, &mut x, self.damping, true);
        // An extrapolated iterate may leave the domain where the energy is defined (a Gram
        // matrix that is no longer positive definite): continue from the plain iterate.
        if let (Err(_), Some(plain)) = (&updated, self.fallback.take()) {
            self.history.clear();
            x = plain.clone();
            previous = plain;
            updated = alternating_update(saddle, &mut x, self.damping, true);
        }
        saddle.set_search(Search::Exhaustive);
        // Periodic exhaustive sweeps catch minimisers that tracking left in a basin that is
        // no longer the lowest; once one (after the first) finds none, tracking is exact here
        // and only the final confirming sweep remains.
        let switches = saddle.take_basin_switches();
        if searched && state.get_iter() > 0 {
            self.periodic = switches > 0;
        }
        updated?;
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::msg(format!("the iteration diverged (from {})", saddle.describe(&previous))));
        }
        // The undamped displacement measures the distance to the fixed point.
        let change = x
            .iter()
            .zip(&previous)
            .map(|(a, b)| (a - b).abs() / (self.damping * (1.0 + b.abs())))
            .fold(0.0, f64::max);
        // Joining is checked on tracked sweeps too: within JOIN_DISTANCE of a fixed point
        // confirmed by an exhaustive sweep, the tracked and searched maps agree.
        self.joined = self.known.iter().any(|k| relatively_close(k, &x, JOIN_DISTANCE));
        // A screened sweep that settled only asks for confirmation: progress is measured by
        // the confirming exhaustive sweep.
        let awaits_confirmation = search == Search::Screened && change <= self.tolerance;
        if self.searching && !awaits_confirmation {
            if change < 0.5 * self.best_exhaustive_change {
                self.best_exhaustive_change = change;
                self.stalled_for = 0;
            } else {
                self.stalled_for += 1;
            }
        }
        if self.searching && change > self.tolerance {
            self.cycle_period = self.cycle_period.or(self.searched_iterates.period_after(&x));
        }
        // Anderson acceleration; the history restarts whenever the map changes, i.e. when an
        // exhaustive sweep moved inner minimisers to other basins.
        if self.memory > 0 && change > self.tolerance {
            if switches > 0 {
                self.history.clear();
            }
            self.history.push((previous.clone(), x.clone()));
            if self.history.len() > self.memory + 1 {
                self.history.remove(0);
            }
            // An extrapolation that leaves the domain (a variance below zero) or moves an
            // unknown by more than its own scale past the plain image comes from a nearly
            // singular least-squares problem and is not trusted: the plain step is taken
            // instead and the history restarts.
            match self.extrapolate() {
                Some(accelerated) if inside(&accelerated, &saddle.model) && within_reach(&accelerated, &x) => {
                    self.fallback = Some(std::mem::replace(&mut x, accelerated));
                }
                Some(_) => self.history.clear(),
                None => {}
            }
        }
        Ok((state.param(x).cost(change), None))
    }

    fn terminate(&mut self, state: &SaddleState) -> TerminationStatus {
        if state.get_iter() > 0 && state.get_cost() <= self.tolerance && self.last_full {
            TerminationStatus::Terminated(TerminationReason::SolverConverged)
        } else if self.joined {
            TerminationStatus::Terminated(TerminationReason::SolverExit("joined a known fixed point".into()))
        } else if let Some(period) = self.cycle_period {
            TerminationStatus::Terminated(TerminationReason::SolverExit(format!(
                "no convergence: the iteration cycles with period {period} (inner minimisers keep switching basins)"
            )))
        } else if self.stalled_for >= STALL_LIMIT {
            TerminationStatus::Terminated(TerminationReason::SolverExit(format!(
                "no convergence: with global inner minimisers the change stays near {:.1e} for {STALL_LIMIT} iterations (inner minimisers keep switching basins)",
                self.best_exhaustive_change
            )))
        } else {
            TerminationStatus::NotTerminated
        }
    }
}

pub struct Newton {
    pub tolerance: f64,
}

fn residual_norm(g: &[f64]) -> f64 {
    g.iter().map(|v| v * v).sum::<f64>().sqrt()
}

impl<'a> Solver<Saddle<'a>, SaddleState> for Newton {
    fn name(&self) -> &str {
        "Newton"
    }

    fn next_iter(&mut self, problem: &mut Problem<Saddle<'a>>, state: SaddleState) -> Result<(SaddleState, Option<KV>), Error> {
        let x = state.get_param().ok_or_else(|| Error::msg("no starting point"))?.clone();
        let gradient = problem.gradient(&x)?;
        let hessian = problem.hessian(&x)?;
        let n = x.len();
        let h = DMatrix::from_fn(n, n, |i, j| hessian[i][j]);
        let g = DVector::from_vec(gradient.clone());
        let step = linear_solve(&h, &(-&g)).ok_or_else(|| Error::msg("singular Hessian"))?;
        let start_norm = residual_norm(&gradient);
        let saddle = problem.problem.as_ref().expect("problem is set").0;
        let mut t = 1.0;
        let mut best = None;
        while t > 1e-6 {
            let mut trial: Vec<f64> = x.iter().zip(step.iter()).map(|(a, s)| a + t * s).collect();
            project(&mut trial, &saddle.model);
            if let Ok(g) = saddle.gradient(&trial) {
                let norm = residual_norm(&g);
                if norm.is_finite() && norm < (1.0 - 1e-4 * t) * start_norm {
                    best = Some((trial, norm));
                    break;
                }
            }
            t *= 0.5;
        }
        let (next, norm) = best.ok_or_else(|| Error::msg("Newton line search failed"))?;
        Ok((state.param(next).cost(norm), None))
    }

    fn terminate(&mut self, state: &SaddleState) -> TerminationStatus {
        if state.get_iter() > 0 && state.get_cost() <= self.tolerance {
            TerminationStatus::Terminated(TerminationReason::SolverConverged)
        } else {
            TerminationStatus::NotTerminated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn model(source: &str) -> CheckedModel {
        let file = crate::syntax::parse_model(source).unwrap_or_else(|e| panic!("{e:?}"));
        crate::types::check_model(&file, &BTreeMap::new(), &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn an_indefinite_psd_matrix_is_moved_to_the_nearest_positive_semidefinite_one() {
        let checked = model(
            "order V : sym[2] in psd\nconjugate Vh of V\nterm t = V[1,1]*Vh[1,1] + V[1,2]*Vh[1,2] + V[2,2]*Vh[2,2]\nextremize energy\n",
        );
        let v = &checked.unknowns[0];
        let entry = |x: &[f64], i: usize, j: usize| x[v.index[i * 2 + j]];
        let mut x = vec![0.0; checked.unknown_labels.len()];
        // [[1, 2], [2, 1]] has eigenvalues 3 and -1: the projection is [[1.5, 1.5], [1.5, 1.5]].
        x[v.index[0]] = 1.0;
        x[v.index[1]] = 2.0;
        x[v.index[3]] = 1.0;
        project(&mut x, &checked);
        for (i, j) in [(0, 0), (0, 1), (1, 1)] {
            assert!((entry(&x, i, j) - 1.5).abs() < 1e-9, "{x:?}");
        }
        // A positive definite matrix with a negative off-diagonal entry is left alone.
        let mut y = vec![0.0; checked.unknown_labels.len()];
        y[v.index[0]] = 2.0;
        y[v.index[1]] = -1.0;
        y[v.index[3]] = 2.0;
        let before = y.clone();
        project(&mut y, &checked);
        assert_eq!(y, before);
        assert!(inside(&y, &checked) && inside(&x, &checked));
        let mut indefinite = vec![0.0; checked.unknown_labels.len()];
        indefinite[v.index[0]] = 1.0;
        indefinite[v.index[1]] = 2.0;
        indefinite[v.index[3]] = 1.0;
        assert!(!inside(&indefinite, &checked));
    }

    #[test]
    fn an_iteration_that_returns_to_an_earlier_iterate_cycles_with_that_period() {
        let mut cycling = CycleDetector::default();
        let orbit = [[1.0, 2.0], [1.5, 2.5], [0.5, 3.0]];
        let periods: Vec<Option<usize>> = orbit.iter().cycle().take(7).map(|x| cycling.period_after(x)).collect();
        assert_eq!(periods, vec![None, None, None, Some(3), Some(3), Some(3), Some(3)]);
        // A converging sequence comes ever closer but never back.
        let mut converging = CycleDetector::default();
        assert!((1..200).all(|k| converging.period_after(&[1.0 + 0.9f64.powi(k)]).is_none()));
        // Only the last CYCLE_MEMORY iterates are remembered.
        let mut forgetful = CycleDetector::default();
        for k in 0..=CYCLE_MEMORY {
            assert_eq!(forgetful.period_after(&[k as f64]), None);
        }
        assert_eq!(forgetful.period_after(&[0.0]), None);
    }

    #[test]
    fn far_reaching_extrapolations_are_out_of_reach() {
        assert!(within_reach(&[1.5, -0.5], &[1.0, 0.0]));
        assert!(!within_reach(&[2133.0], &[0.9]));
    }
}
