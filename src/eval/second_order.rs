//! The Newton steps of inner minimisations run the body in second-order vector duals
//! (`Dual2SVec64<K>`) at every integration node, so their arithmetic dominates a solve.
//! num-dual's operators build and move several K x K temporaries per operation; here sums,
//! differences, products and quotients are written entry by entry into the destination
//! register, with num-dual's formulas term by term in the same order (an absent derivative
//! part is zero and is skipped, as there), so the results are num-dual's. Every other
//! instruction goes through the generic interpreter.

use nalgebra::SMatrix;
use num_dual::{Derivative, Dual2SVec64};

use super::tape::step;
use super::EvalError;
use crate::ir::{BinaryFn, Instr};

/// Run a minimisation body on second-order registers.
pub fn run<const K: usize>(instrs: &[Instr], r: &mut [Dual2SVec64<K>]) -> Result<(), EvalError> {
    for instr in instrs {
        match instr {
            Instr::Binary { op, dst, left, right } if matches!(op, BinaryFn::Add | BinaryFn::Sub | BinaryFn::Mul | BinaryFn::Div) => {
                let value = binary(*op, &r[*left], &r[*right]);
                r[*dst] = value;
            }
            other => step(other, r)?,
        }
    }
    Ok(())
}

/// `a + b` with an absent term skipped.
#[inline(always)]
fn plus(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}

/// `a - b` with an absent term skipped.
#[inline(always)]
fn minus(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a - b),
        (a, None) => a,
        (None, Some(b)) => Some(-b),
    }
}

/// A derivative part from its entries; `present` says whether any term was.
#[inline(always)]
fn part<const R: usize, const C: usize>(present: bool, entry: impl Fn(usize, usize) -> Option<f64>) -> Derivative<f64, nalgebra::Const<R>, nalgebra::Const<C>> {
    Derivative::new(present.then(|| SMatrix::<f64, R, C>::from_fn(|i, j| entry(i, j).unwrap_or(0.0))))
}

#[inline(always)]
fn binary<const K: usize>(op: BinaryFn, a: &Dual2SVec64<K>, b: &Dual2SVec64<K>) -> Dual2SVec64<K> {
    let (a1, b1, a2, b2) = (a.v1.0.as_ref(), b.v1.0.as_ref(), a.v2.0.as_ref(), b.v2.0.as_ref());
    let g = |m: Option<&SMatrix<f64, 1, K>>, j: usize| m.map(|m| m[(0, j)]);
    let h = |m: Option<&SMatrix<f64, K, K>>, i: usize, j: usize| m.map(|m| m[(i, j)]);
    // tr_mul of two gradients: the outer product x_i y_j.
    let outer = |x: Option<&SMatrix<f64, 1, K>>, y: Option<&SMatrix<f64, 1, K>>, i: usize, j: usize| x.zip(y).map(|(x, y)| x[(0, i)] * y[(0, j)]);
    let any1 = a1.is_some() || b1.is_some();
    let any2 = a2.is_some() || b2.is_some();
    let both1 = a1.is_some() && b1.is_some();
    match op {
        BinaryFn::Add => Dual2SVec64::new(
            a.re + b.re,
            part(any1, |_, j| plus(g(a1, j), g(b1, j))),
            part(any2, |i, j| plus(h(a2, i, j), h(b2, i, j))),
        ),
        BinaryFn::Sub => Dual2SVec64::new(
            a.re - b.re,
            part(any1, |_, j| minus(g(a1, j), g(b1, j))),
            part(any2, |i, j| minus(h(a2, i, j), h(b2, i, j))),
        ),
        BinaryFn::Mul => Dual2SVec64::new(
            a.re * b.re,
            part(any1, |_, j| plus(g(b1, j).map(|v| v * a.re), g(a1, j).map(|v| v * b.re))),
            part(any2 || both1, |i, j| {
                let sum = plus(h(b2, i, j).map(|v| v * a.re), outer(a1, b1, i, j));
                let sum = plus(sum, outer(b1, a1, i, j));
                plus(sum, h(a2, i, j).map(|v| v * b.re))
            }),
        ),
        BinaryFn::Div => {
            let inv = b.re.recip();
            let inv2 = inv * inv;
            let curvature = 2.0 * a.re * inv2 * inv;
            Dual2SVec64::new(
                a.re * inv,
                part(any1, |_, j| minus(g(a1, j).map(|v| v * b.re), g(b1, j).map(|v| v * a.re)).map(|v| v * inv2)),
                part(any2 || b1.is_some(), |i, j| {
                    let cross = plus(h(b2, i, j).map(|v| v * a.re), outer(a1, b1, i, j));
                    let cross = plus(cross, outer(b1, a1, i, j)).map(|v| v * inv2);
                    let sum = minus(h(a2, i, j).map(|v| v * inv), cross);
                    plus(sum, outer(b1, b1, i, j).map(|v| v * curvature))
                }),
            )
        }
        _ => unreachable!("only arithmetic is specialised"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A number with each derivative part present or absent, from a small pseudo-random stream.
    fn sample<const K: usize>(seed: &mut u64, with_gradient: bool, with_hessian: bool) -> Dual2SVec64<K> {
        let mut next = || {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
        };
        let re = next();
        let v1 = with_gradient.then(|| SMatrix::<f64, 1, K>::from_fn(|_, _| next()));
        let v2 = with_hessian.then(|| SMatrix::<f64, K, K>::from_fn(|_, _| next()));
        Dual2SVec64::new(re, Derivative::new(v1), Derivative::new(v2))
    }

    fn check<const K: usize>() {
        let mut seed = 7;
        for pattern in 0..16u32 {
            for _ in 0..20 {
                let a = sample::<K>(&mut seed, pattern & 1 != 0, pattern & 2 != 0);
                let b = sample::<K>(&mut seed, pattern & 4 != 0, pattern & 8 != 0);
                for (op, expected) in [(BinaryFn::Add, a + b), (BinaryFn::Sub, a - b), (BinaryFn::Mul, a * b), (BinaryFn::Div, a / b)] {
                    let got = binary(op, &a, &b);
                    // Equal as numbers (a zero may differ in sign from a dot product's 0 + x).
                    assert!(got.re == expected.re, "{op:?} {pattern}");
                    assert_eq!(got.v1.0.is_some(), expected.v1.0.is_some(), "{op:?} {pattern}");
                    assert_eq!(got.v2.0.is_some(), expected.v2.0.is_some(), "{op:?} {pattern}");
                    if let (Some(x), Some(y)) = (got.v1.0, expected.v1.0) {
                        assert!(x.iter().zip(y.iter()).all(|(x, y)| x == y), "{op:?} {pattern}: {x} {y}");
                    }
                    if let (Some(x), Some(y)) = (got.v2.0, expected.v2.0) {
                        assert!(x.iter().zip(y.iter()).all(|(x, y)| x == y), "{op:?} {pattern}: {x} {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn arithmetic_matches_num_dual() {
        check::<1>();
        check::<2>();
        check::<4>();
    }
}
