//! The saddle-point problem of one checked model at fixed params: the free energy Phi over
//! the vector of unknowns (order parameters then conjugates), its gradient and Hessian by
//! forward-mode duals, and the observables. Derivatives come only from the number type.

use std::sync::Mutex;

use nalgebra::{DMatrix, SVector, U1};
use num_dual::{DualSVec64, HyperDualVec};

use crate::eval::first_order::FirstOrder;
use crate::eval::tape::{Generic, Interpreter};
use crate::eval::{EvalError, Evaluator, Number, Search};
use crate::ir::{reads_writes, Program, Slot};
use crate::types::{CheckedModel, Role, Shape};

/// Widest dual of a gradient pass: every pass repeats the inner minimisations in f64, so few
/// wide passes beat many narrow ones.
const GRADIENT_CHUNK: usize = 16;
const HESSIAN_BLOCK: usize = 4;
type HessianNumber = HyperDualVec<f64, nalgebra::Const<HESSIAN_BLOCK>, nalgebra::Const<HESSIAN_BLOCK>>;

/// Observables by name, with their shape and entries.
pub type ObservableValues = Vec<(String, Shape, Vec<f64>)>;

pub struct SaddleProblem {
    pub model: CheckedModel,
    energy: Evaluator,
    observe: Evaluator,
    /// Programs restricted to the terms that depend on each group of unknowns; they share
    /// the minimiser caches of `energy`.
    order_only_slice: Evaluator,
    conjugate_slice: Evaluator,
    coupling_slice: Evaluator,
    pub orders: Vec<usize>,
    pub conjugates: Vec<usize>,
    /// The last gradient of the conjugate-free terms (the expensive channel terms): a step
    /// that moves only conjugates reuses it.
    order_only_memo: Mutex<Option<GradientMemo>>,
    /// Where `energy` last ran: the free energy's evaluator holds that run's means over each
    /// scramble, which `free_energy_for_observables` replays at the same point.
    energy_recorded_at: Mutex<Option<Vec<f64>>>,
}

struct GradientMemo {
    orders: Vec<f64>,
    search: Search,
    gradient: Vec<f64>,
}

/// The free energy at one point with the full rules, and on each scramble of the
/// observables' quasi-Monte-Carlo rules (empty when they have none).
#[derive(Debug, Clone)]
pub struct FreeEnergyOnScrambles {
    pub full: f64,
    pub on_scramble: Vec<f64>,
}

/// Values of one evaluation of the terms.
#[derive(Debug, Clone)]
pub struct EnergyTerms {
    pub total: f64,
    pub terms: Vec<(String, f64)>,
}

impl SaddleProblem {
    pub fn new(model: CheckedModel) -> Self {
        let orders: Vec<usize> = (0..model.unknown_count()).filter(|&i| model.unknown_roles[i] == Role::Order).collect();
        let conjugates: Vec<usize> =
            (0..model.unknown_count()).filter(|&i| model.unknown_roles[i] == Role::Conjugate).collect();
        let dependencies = term_dependencies(&model);
        let pick = |want: &dyn Fn(&[bool]) -> bool| -> Vec<Slot> {
            model.terms.iter().zip(&dependencies).filter(|(_, d)| want(d)).map(|(t, _)| t.slots[0]).collect()
        };
        let touches = |d: &[bool], group: &[usize]| group.iter().any(|&i| d[i]);
        let order_only_terms = pick(&|d| touches(d, &orders) && !touches(d, &conjugates));
        let conjugate_terms = pick(&|d| touches(d, &conjugates));
        let coupling_terms = pick(&|d| touches(d, &orders) && touches(d, &conjugates));
        let energy = Evaluator::new(model.energy.clone());
        SaddleProblem {
            observe: Evaluator::new(model.observe.clone()),
            order_only_slice: Evaluator::slice_of(&energy, slice(&model.energy, &order_only_terms)),
            conjugate_slice: Evaluator::slice_of(&energy, slice(&model.energy, &conjugate_terms)),
            coupling_slice: Evaluator::slice_of(&energy, slice(&model.energy, &coupling_terms)),
            energy,
            orders,
            conjugates,
            model,
            order_only_memo: Mutex::new(None),
            energy_recorded_at: Mutex::new(None),
        }
    }

    /// The same problem with the free energy's quasi-Monte-Carlo expectations restricted to
    /// scramble `group` (observables keep their full rules).
    pub fn restricted_to_scramble(&self, group: usize) -> SaddleProblem {
        let mut restricted = SaddleProblem::new(self.model.clone());
        for evaluator in [&mut restricted.energy, &mut restricted.order_only_slice, &mut restricted.conjugate_slice, &mut restricted.coupling_slice] {
            evaluator.tables = evaluator.restricted_tables(group);
        }
        restricted
    }

    /// Largest number of independent scrambles among the free energy's expectations.
    pub fn energy_scramble_groups(&self) -> usize {
        self.energy.scramble_groups()
    }

    /// How inner minimisations search for global minimisers; see `eval::Search`.
    pub fn set_search(&self, search: Search) {
        for evaluator in [&self.energy, &self.observe, &self.order_only_slice, &self.conjugate_slice, &self.coupling_slice] {
            evaluator.set_search(search);
        }
    }

    /// Inner minimisations moved to another basin by exhaustive searches since the last call
    /// (the caches are shared by every evaluator of the free energy).
    pub fn take_basin_switches(&self) -> u64 {
        self.energy.take_basin_switches()
    }

    /// Forget the free energy's cached inner minimisers (and the gradient memo that depends
    /// on them), so that what a solve reaches does not depend on earlier solves.
    pub fn forget_minimizers(&self) {
        self.energy.clear_caches();
        *self.order_only_memo.lock().expect("memo lock") = None;
    }

    /// Fraction of the free energy's inner minimisations (over all nodes) whose two lowest
    /// basins lay within relative `gap` at their last full search: where the minimiser is
    /// about to jump. `None` without inner minimisations.
    pub fn near_switch_fraction(&self, gap: f64) -> Option<f64> {
        let (tied, searched) = self.energy.caches.iter().map(|c| c.near_ties(gap)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        (searched > 0).then(|| tied as f64 / searched as f64)
    }

    pub fn search(&self) -> Search {
        self.energy.search()
    }

    pub fn dimension(&self) -> usize {
        self.model.unknown_count()
    }

    fn registers<D: Number>(&self, program: &Program, x: &[D]) -> Vec<D> {
        let mut registers = vec![D::from(0.0); program.slot_count];
        for unknown in &self.model.unknowns {
            for (slot, &index) in unknown.slots.iter().zip(&unknown.index) {
                registers[*slot] = x[index];
            }
        }
        registers
    }

    fn total<D: Number, S: Interpreter<D>>(&self, evaluator: &Evaluator, x: &[D], outputs: &[Slot]) -> Result<D, EvalError> {
        let mut registers = self.registers(&evaluator.program, x);
        evaluator.run_with::<D, S>(&mut registers)?;
        Ok(outputs.iter().fold(D::from(0.0), |acc, s| acc + registers[*s]))
    }

    fn term_slots(&self) -> Vec<Slot> {
        self.model.terms.iter().map(|t| t.slots[0]).collect()
    }

    pub fn energy(&self, x: &[f64]) -> Result<EnergyTerms, EvalError> {
        let mut recorded_at = self.energy_recorded_at.lock().expect("record lock");
        *recorded_at = None;
        let energy = self.energy_with(&self.energy, x)?;
        *recorded_at = Some(x.to_vec());
        Ok(energy)
    }

    /// The terms at `x` evaluated by `evaluator` (the free energy's, or one restricted to a
    /// scramble).
    fn energy_with(&self, evaluator: &Evaluator, x: &[f64]) -> Result<EnergyTerms, EvalError> {
        let mut registers = self.registers(&evaluator.program, x);
        evaluator.run(&mut registers)?;
        let terms: Vec<(String, f64)> =
            self.model.terms.iter().map(|t| (t.name.clone(), registers[t.slots[0]])).collect();
        let total = terms.iter().map(|t| t.1).sum();
        if !f64::is_finite(total) {
            return Err(EvalError::new(format!("the free energy is not finite at {}", self.describe(x))));
        }
        Ok(EnergyTerms { total, terms })
    }

    /// d Phi / d x_i for i in `which`, from forward-mode passes on `evaluator`.
    fn gradient_on(&self, evaluator: &Evaluator, x: &[f64], which: &[usize]) -> Result<Vec<f64>, EvalError> {
        // Narrow dual numbers when few directions are needed: every operation costs O(N).
        let mut gradient = vec![0.0; x.len()];
        if which.len() <= 4 {
            self.gradient_chunks::<4>(evaluator, x, which, &mut gradient)?;
        } else if which.len() <= 8 {
            self.gradient_chunks::<8>(evaluator, x, which, &mut gradient)?;
        } else {
            self.gradient_chunks::<GRADIENT_CHUNK>(evaluator, x, which, &mut gradient)?;
        }
        if gradient.iter().any(|g| !g.is_finite()) {
            return Err(EvalError::new(format!("the gradient is not finite at {}", self.describe(x))));
        }
        Ok(gradient)
    }

    fn gradient_chunks<const N: usize>(&self, evaluator: &Evaluator, x: &[f64], which: &[usize], gradient: &mut [f64]) -> Result<(), EvalError> {
        let outputs = self.term_slots();
        for chunk in which.chunks(N) {
            let seeded: Vec<DualSVec64<N>> = x
                .iter()
                .enumerate()
                .map(|(i, &v)| match chunk.iter().position(|&c| c == i) {
                    Some(k) => DualSVec64::<N>::from_re(v).derivative(k),
                    None => DualSVec64::<N>::from_re(v),
                })
                .collect();
            let value = self.total::<_, FirstOrder>(evaluator, &seeded, &outputs)?;
            let derivatives: SVector<f64, N> = value.eps.unwrap_generic(nalgebra::Const, U1);
            for (k, &i) in chunk.iter().enumerate() {
                gradient[i] = derivatives[k];
            }
        }
        Ok(())
    }

    pub fn gradient(&self, x: &[f64]) -> Result<Vec<f64>, EvalError> {
        let mut gradient = self.gradient_orders(x)?;
        let conjugate_part = self.gradient_on(&self.conjugate_slice, x, &self.conjugates)?;
        for &i in &self.conjugates {
            gradient[i] = conjugate_part[i];
        }
        Ok(gradient)
    }

    /// d Phi / d(order), the order entries of a full-length vector.
    pub fn gradient_orders(&self, x: &[f64]) -> Result<Vec<f64>, EvalError> {
        let mut gradient = self.gradient_order_only(x)?;
        let coupled = self.gradient_on(&self.coupling_slice, x, &self.orders)?;
        for &i in &self.orders {
            gradient[i] += coupled[i];
        }
        Ok(gradient)
    }

    /// The order gradient of the terms free of conjugates, memoised on the order values: a
    /// narrower search after a wider one at the same point gives the same result.
    fn gradient_order_only(&self, x: &[f64]) -> Result<Vec<f64>, EvalError> {
        let orders: Vec<f64> = self.orders.iter().map(|&i| x[i]).collect();
        let search = self.search();
        let mut memo = self.order_only_memo.lock().expect("memo lock");
        if let Some(m) = memo.as_ref() {
            if m.orders == orders && m.search >= search {
                return Ok(m.gradient.clone());
            }
        }
        let gradient = self.gradient_on(&self.order_only_slice, x, &self.orders)?;
        *memo = Some(GradientMemo { orders, search, gradient: gradient.clone() });
        Ok(gradient)
    }

    pub fn gradient_conjugates(&self, x: &[f64]) -> Result<Vec<f64>, EvalError> {
        self.gradient_on(&self.conjugate_slice, x, &self.conjugates)
    }

    /// Second derivatives d^2 Phi / dx_i dx_j for i in rows, j in cols.
    fn hessian_on(&self, evaluator: &Evaluator, x: &[f64], rows: &[usize], cols: &[usize]) -> Result<DMatrix<f64>, EvalError> {
        let outputs = self.term_slots();
        let mut hessian = DMatrix::zeros(rows.len(), cols.len());
        for (row_block, row_chunk) in rows.chunks(HESSIAN_BLOCK).enumerate() {
            for (col_block, col_chunk) in cols.chunks(HESSIAN_BLOCK).enumerate() {
                let seeded: Vec<HessianNumber> = x
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let mut number = HessianNumber::from_re(v);
                        if let Some(k) = row_chunk.iter().position(|&c| c == i) {
                            number = number.derivative1(k);
                        }
                        if let Some(k) = col_chunk.iter().position(|&c| c == i) {
                            number = number.derivative2(k);
                        }
                        number
                    })
                    .collect();
                let value = self.total::<_, Generic>(evaluator, &seeded, &outputs)?;
                let block = value.eps1eps2.unwrap_generic(nalgebra::Const, nalgebra::Const);
                for a in 0..row_chunk.len() {
                    for b in 0..col_chunk.len() {
                        hessian[(row_block * HESSIAN_BLOCK + a, col_block * HESSIAN_BLOCK + b)] = block[(a, b)];
                    }
                }
            }
        }
        if hessian.iter().any(|h| !h.is_finite()) {
            return Err(EvalError::new(format!("the Hessian is not finite at {}", self.describe(x))));
        }
        Ok(hessian)
    }

    pub fn hessian(&self, x: &[f64]) -> Result<DMatrix<f64>, EvalError> {
        let all: Vec<usize> = (0..x.len()).collect();
        self.hessian_on(&self.energy, x, &all, &all)
    }

    /// d^2 Phi / d(order) d(conjugate): the coupling between the two groups.
    pub fn coupling(&self, x: &[f64]) -> Result<DMatrix<f64>, EvalError> {
        self.hessian_on(&self.coupling_slice, x, &self.orders, &self.conjugates)
    }

    /// Observables at `x`; an observable that reads `free_energy` gets the free energy at `x`
    /// with the current search for inner minimisers.
    pub fn observables(&self, x: &[f64]) -> Result<ObservableValues, EvalError> {
        let free_energy = if self.model.free_energy_slot.is_some() { self.energy(x)?.total } else { f64::NAN };
        self.observables_with(&self.observe, x, free_energy)
    }

    fn observables_with(&self, evaluator: &Evaluator, x: &[f64], free_energy: f64) -> Result<ObservableValues, EvalError> {
        let mut registers = self.registers(&evaluator.program, x);
        if let Some(slot) = self.model.free_energy_slot {
            registers[slot] = free_energy;
        }
        evaluator.run(&mut registers)?;
        Ok(self
            .model
            .observables
            .iter()
            .map(|o| (o.name.clone(), o.shape, o.slots.iter().map(|s| registers[*s]).collect()))
            .collect())
    }

    /// What observables that read `free_energy` need at a fixed point: the free energy `full`
    /// (with the full rules, already known) and its value on each scramble that the
    /// observables' integration error uses. `None` when no observable reads it. The inner
    /// minimisers are tracked from the caches, so call this while they hold the global
    /// minimisers at `x` (right after a solve).
    pub fn free_energy_for_observables(&self, x: &[f64], full: f64) -> Result<Option<FreeEnergyOnScrambles>, EvalError> {
        if self.model.free_energy_slot.is_none() {
            return Ok(None);
        }
        let groups = self.observe.scramble_groups();
        let on_scramble = if groups <= 1 {
            Vec::new()
        } else {
            (0..groups)
                .map(|g| {
                    let recorded_here = self.energy_recorded_at.lock().expect("record lock").as_deref() == Some(x);
                    let replay = if recorded_here { self.energy.replay_on_scramble(g) } else { None };
                    let on_scramble = replay.unwrap_or_else(|| self.energy.scramble_at_last_point(g));
                    Ok(self.energy_with(&on_scramble, x)?.total)
                })
                .collect::<Result<_, EvalError>>()?
        };
        Ok(Some(FreeEnergyOnScrambles { full, on_scramble }))
    }

    /// Observables with the full rules, then on each independent scramble of the
    /// quasi-Monte-Carlo rules alone (empty when every rule is deterministic): their spread
    /// estimates the integration error. The scramble runs reuse the full run's minimisers.
    /// `free_energy` comes from [`Self::free_energy_for_observables`] at the same point.
    pub fn observables_with_scrambles(
        &self,
        x: &[f64],
        free_energy: Option<&FreeEnergyOnScrambles>,
    ) -> Result<(ObservableValues, Vec<ObservableValues>), EvalError> {
        // The scramble runs track what this run finds: it must search globally.
        self.observe.set_search(Search::Exhaustive);
        let full = self.observables_with(&self.observe, x, free_energy.map_or(f64::NAN, |f| f.full))?;
        let groups = self.observe.scramble_groups();
        if groups <= 1 {
            return Ok((full, Vec::new()));
        }
        let per_scramble = (0..groups)
            .map(|g| {
                let energy = free_energy.map_or(f64::NAN, |f| f.on_scramble[g]);
                let on_scramble = self.observe.replay_on_scramble(g).unwrap_or_else(|| self.observe.scramble_at_last_point(g));
                self.observables_with(&on_scramble, x, energy)
            })
            .collect::<Result<_, _>>()?;
        Ok((full, per_scramble))
    }

    pub fn describe(&self, x: &[f64]) -> String {
        describe_unknowns(&self.model.unknown_labels, x)
    }
}

/// `q = 0.500000, V = 1.000000, ...`: unknowns by label, for messages and traces.
pub fn describe_unknowns(labels: &[String], x: &[f64]) -> String {
    labels.iter().zip(x).map(|(l, v)| format!("{l} = {v:.6}")).collect::<Vec<_>>().join(", ")
}

/// Which unknowns each term depends on (forward data flow over the top-level tape).
fn term_dependencies(model: &CheckedModel) -> Vec<Vec<bool>> {
    let n = model.unknown_count();
    let program = &model.energy;
    let mut depends: Vec<Vec<bool>> = vec![vec![false; n]; program.slot_count];
    for unknown in &model.unknowns {
        for (slot, &index) in unknown.slots.iter().zip(&unknown.index) {
            depends[*slot][index] = true;
        }
    }
    for instr in &program.instrs {
        let (reads, writes) = reads_writes(instr);
        let mut union = vec![false; n];
        for r in reads {
            for (u, d) in union.iter_mut().zip(&depends[r]) {
                *u |= *d;
            }
        }
        for w in writes {
            depends[w] = union.clone();
        }
    }
    model.terms.iter().map(|t| depends[t.slots[0]].clone()).collect()
}

/// The part of a program needed to compute `outputs` (backward slicing of the top level).
fn slice(program: &Program, outputs: &[Slot]) -> Program {
    let mut needed = vec![false; program.slot_count];
    for &o in outputs {
        needed[o] = true;
    }
    let mut kept = Vec::new();
    for instr in program.instrs.iter().rev() {
        let (reads, writes) = reads_writes(instr);
        if writes.iter().any(|w| needed[*w]) {
            for r in reads {
                needed[r] = true;
            }
            kept.push(instr.clone());
        }
    }
    kept.reverse();
    Program { instrs: kept, ..program.clone() }
}


#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A tilted double well at each of 8 Gauss-Hermite nodes: the well on the side of `c u`
    /// is lower by about `2 abs(c u)`, so the sign of `c` decides every node's basin and the
    /// nodes nearest u = 0 have the closest basins.
    fn double_wells() -> SaddleProblem {
        let source = "order c\nconjugate ch of c\n\
            term wells = c*ch + E[u ~ N(0, 1); hermite(8)] { min h in R from (-1, 1) { (h^2 - 1)^2 - c*u*h } }\n\
            extremize energy\n";
        let file = crate::syntax::parse_model(source).unwrap_or_else(|e| panic!("{e:?}"));
        let model = crate::types::check_model(&file, &BTreeMap::new(), &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"));
        SaddleProblem::new(model)
    }

    /// `hessian` over five variables (two blocks of hyper-dual passes) of a cubic plus a
    /// Moreau envelope: exact against the closed form, off-diagonal blocks included.
    #[test]
    fn a_hessian_over_several_blocks_matches_the_closed_form() {
        // f(y) = sum_i i y_i^3 / 6 + y_1 y_5 + min_h [h^2/2 + (h - y_2 - y_4)^2/(2 V)] with
        // V = 1/2: the envelope is (y_2 + y_4)^2/(2 (1 + V)), curvature 1/(1 + V) = 2/3.
        let source = "order c\nconjugate ch of c\nterm t = c*ch\nextremize energy\n\
            observe H = hessian y in R[5] at [1, 2, 3, 4, 5] {\n\
                y[1]^3/6 + 2*y[2]^3/6 + 3*y[3]^3/6 + 4*y[4]^3/6 + 5*y[5]^3/6 + y[1]*y[5]\n\
                + (min h in R from (0) { h^2/2 + (h - y[2] - y[4])^2/(2*0.5) })\n\
            }\n";
        let file = crate::syntax::parse_model(source).unwrap_or_else(|e| panic!("{e:?}"));
        let model = crate::types::check_model(&file, &BTreeMap::new(), &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"));
        let problem = SaddleProblem::new(model);
        let observed = problem.observables(&vec![0.0; problem.dimension()]).unwrap();
        let hessian = &observed[0].2;
        let mut expected = [[0.0f64; 5]; 5];
        for (i, row) in expected.iter_mut().enumerate() {
            row[i] = ((i + 1) * (i + 1)) as f64;
        }
        expected[0][4] = 1.0;
        expected[4][0] = 1.0;
        for (i, j) in [(1, 1), (1, 3), (3, 1), (3, 3)] {
            expected[i][j] += 2.0 / 3.0;
        }
        for i in 0..5 {
            for j in 0..5 {
                assert!((hessian[i * 5 + j] - expected[i][j]).abs() < 1e-9, "H[{i}][{j}] = {} vs {}", hessian[i * 5 + j], expected[i][j]);
            }
        }
    }

    #[test]
    fn a_screened_sweep_searches_only_the_nodes_whose_basins_were_close() {
        let problem = double_wells();
        let at = |c: f64| {
            let mut x = vec![0.0; problem.dimension()];
            x[problem.orders[0]] = c;
            x
        };
        // c = 0.005: the relative gaps are about 0.005, 0.016, 0.028 and 0.041 (two nodes
        // each); only the innermost pair lies within the screening gap.
        problem.set_search(Search::Exhaustive);
        problem.energy(&at(0.005)).unwrap();
        assert_eq!(problem.take_basin_switches(), 8, "a first search finds every node's basin");
        // Flipping the tilt makes the other well lowest at every node.
        problem.set_search(Search::Tracked);
        problem.energy(&at(-0.005)).unwrap();
        assert_eq!(problem.take_basin_switches(), 0, "tracking never searches");
        problem.set_search(Search::Screened);
        problem.energy(&at(-0.005)).unwrap();
        assert_eq!(problem.take_basin_switches(), 2, "screening searches the close pair only");
        problem.set_search(Search::Exhaustive);
        let exhaustive = problem.energy(&at(-0.005)).unwrap().total;
        assert_eq!(problem.take_basin_switches(), 6, "the full search moves the other six");
        // With every node in its lowest basin, a screened sweep agrees with the full one.
        problem.set_search(Search::Screened);
        assert_eq!(problem.energy(&at(-0.005)).unwrap().total, exhaustive);
        assert_eq!(problem.take_basin_switches(), 0);
    }

    /// k identical copies of a tilted double well, `-logcosh(3 h) + h^2/2 - c u h`, in one
    /// minimisation over R[k]: the envelope is k times that of one copy.
    fn copies_of_a_double_well(k: usize) -> SaddleProblem {
        let source = format!(
            "order c\nconjugate ch of c\n\
            term wells = c*ch + E[u ~ N(0, 1); hermite(8)] {{ min h in R[{k}] {{ sum(-1*logcosh(3*h)) + norm2(h)/2 - c*u*sum(h) }} }}\n\
            extremize energy\n"
        );
        let file = crate::syntax::parse_model(&source).unwrap_or_else(|e| panic!("{e:?}"));
        let model = crate::types::check_model(&file, &BTreeMap::new(), &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"));
        SaddleProblem::new(model)
    }

    #[test]
    fn an_envelope_over_many_variables_is_the_sum_over_its_separable_parts() {
        let at = |problem: &SaddleProblem| {
            let mut x = vec![0.0; problem.dimension()];
            x[problem.orders[0]] = 0.4;
            x
        };
        let one = copies_of_a_double_well(1);
        let value = one.energy(&at(&one)).unwrap().total;
        let slope = one.gradient(&at(&one)).unwrap()[one.orders[0]];
        assert!(value < -1.0 && slope < -0.1, "a tilted double well: {value}, {slope}");
        // Four variables run Newton in fixed-size storage, six in dynamic storage.
        for k in [4, 6] {
            let copies = copies_of_a_double_well(k);
            let total = copies.energy(&at(&copies)).unwrap().total;
            let gradient = copies.gradient(&at(&copies)).unwrap()[copies.orders[0]];
            let scale = k as f64;
            assert!((total - scale * value).abs() <= 1e-10 * scale * value.abs(), "k = {k}: {total} vs {}", scale * value);
            assert!((gradient - scale * slope).abs() <= 1e-9 * scale * slope.abs(), "k = {k}: {gradient} vs {}", scale * slope);
        }
    }

    #[test]
    fn replayed_scrambles_agree_with_runs_on_each_scramble_alone() {
        // Rules with 4 and 2 scrambles and a deterministic one, nonlinear functions of the
        // expectations, an inner minimisation, and an observable that reads the free energy.
        let source = "order c\nconjugate ch of c\n\
            term wells = c*ch + E[u ~ N(0, 1); sobol(256, 4)] { min h in R { -1*logcosh(3*h) + h^2/2 - c*u*h } }\n\
            extremize energy\n\
            observe curved = exp(E[u ~ N(0, I(2)); sobol(128, 4)] { min h in R { -1*logcosh(3*h) + h^2/2 - (c + u[1])*h + u[2]^2 } })\n\
            observe product = E[u ~ N(0, 1); hermite(8)] { u^2 } * E[z ~ N(0, 1); sobol(64, 2)] { z^4 }\n\
            observe train = free_energy/2\n";
        let file = crate::syntax::parse_model(source).unwrap_or_else(|e| panic!("{e:?}"));
        let model = crate::types::check_model(&file, &BTreeMap::new(), &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"));
        let problem = SaddleProblem::new(model);
        let mut x = vec![0.0; problem.dimension()];
        x[problem.orders[0]] = 0.3;
        x[problem.conjugates[0]] = 0.2;
        let full = problem.energy(&x).unwrap().total;
        let free_energy = problem.free_energy_for_observables(&x, full).unwrap().unwrap();
        let (_, replayed) = problem.observables_with_scrambles(&x, Some(&free_energy)).unwrap();
        assert_eq!(replayed.len(), 4);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * (1.0 + b.abs());
        for (group, observables) in replayed.iter().enumerate() {
            let energy = problem.energy_with(&problem.energy.scramble_at_last_point(group), &x).unwrap().total;
            assert!(close(free_energy.on_scramble[group], energy), "free energy on scramble {group}");
            let alone = problem.observables_with(&problem.observe.scramble_at_last_point(group), &x, energy).unwrap();
            for ((name, _, value), (_, _, expected)) in observables.iter().zip(&alone) {
                assert!(close(value[0], expected[0]), "{name} on scramble {group}: {} vs {}", value[0], expected[0]);
            }
        }
        // The scrambles differ: the test compares something.
        assert!(!close(replayed[0][0].2[0], replayed[1][0].2[0]));
    }
}
