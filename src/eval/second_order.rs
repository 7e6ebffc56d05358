//! The Newton steps of inner minimisations run the body in second-order vector duals
//! (`Dual2SVec64<K>`) at every integration node, so their arithmetic dominates a solve.
//! num-dual's operators build and move several K x K temporaries per operation; here sums,
//! differences, products and quotients are written entry by entry into the destination
//! register, with num-dual's formulas term by term in the same order (an absent derivative
//! part is zero and is skipped, as there), so the results are num-dual's. Functions of one
//! argument and integer powers take a single chain-rule step with f, f', f'' from a scalar
//! second-order dual: a sigmoid is four num-dual operations on K x K parts, here one.
//! Every other instruction goes through the generic interpreter.

use nalgebra::SMatrix;
use num_dual::{Derivative, Dual2SVec64, Dual2_64, DualNum};

use super::tape::{apply_unary, step, Interpreter};
use super::EvalError;
use crate::ir::{BinaryFn, Instr, UnaryFn};

/// The interpreter for `Dual2SVec64<K>` registers (the Newton passes of inner minimisations).
pub struct SecondOrder;

impl<const K: usize> Interpreter<Dual2SVec64<K>> for SecondOrder {
    #[inline(always)]
    fn step(instr: &Instr, r: &mut [Dual2SVec64<K>]) -> Result<(), EvalError> {
        match instr {
            Instr::Binary { op, dst, left, right } if matches!(op, BinaryFn::Add | BinaryFn::Sub | BinaryFn::Mul | BinaryFn::Div) => {
                let value = binary(*op, &r[*left], &r[*right]);
                r[*dst] = value;
            }
            // Step and sign are constants: the generic path keeps their derivatives absent.
            Instr::Unary { op, dst, src } if !matches!(op, UnaryFn::Step | UnaryFn::Sign) => {
                let value = chain(&r[*src], |x| apply_unary(*op, x));
                r[*dst] = value;
            }
            Instr::PowI { dst, src, exponent } => {
                let value = chain(&r[*src], |x| x.powi(*exponent));
                r[*dst] = value;
            }
            other => step(other, r)?,
        }
        Ok(())
    }
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

/// `f(a)` by one chain-rule step, `f(a) + f'(a) da + (f'(a) d2a + f''(a) da da^T)`, with
/// f, f', f'' from `f` on a scalar second-order dual.
#[inline(always)]
fn chain<const K: usize>(a: &Dual2SVec64<K>, f: impl Fn(Dual2_64) -> Dual2_64) -> Dual2SVec64<K> {
    let scalar = f(Dual2_64::new(a.re, 1.0, 0.0));
    let (f1, f2) = (scalar.v1, scalar.v2);
    let (a1, a2) = (a.v1.0.as_ref(), a.v2.0.as_ref());
    Dual2SVec64::new(
        scalar.re,
        part(a1.is_some(), |_, j| a1.map(|m| m[(0, j)] * f1)),
        part(a1.is_some() || a2.is_some(), |i, j| plus(a2.map(|m| m[(i, j)] * f1), a1.map(|m| m[(0, i)] * m[(0, j)] * f2))),
    )
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

    /// Chain-rule steps agree with num-dual's composed operations to rounding.
    fn check_functions<const K: usize>() {
        let mut seed = 11;
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * (1.0 + x.abs().max(y.abs())) || (x.is_nan() && y.is_nan());
        for pattern in 0..4u32 {
            for _ in 0..20 {
                let a = sample::<K>(&mut seed, pattern & 1 != 0, pattern & 2 != 0);
                let positive = Dual2SVec64::new(a.re.abs() + 0.1, a.v1, a.v2);
                let mut cases: Vec<(String, Dual2SVec64<K>, Dual2SVec64<K>)> = [
                    UnaryFn::Neg, UnaryFn::Exp, UnaryFn::Ln1p, UnaryFn::Abs, UnaryFn::Erf, UnaryFn::Erfc,
                    UnaryFn::GaussianTail, UnaryFn::LogGaussianTail, UnaryFn::GaussianPdf, UnaryFn::GaussianCdf,
                    UnaryFn::Sigmoid, UnaryFn::LogSigmoid, UnaryFn::Softplus, UnaryFn::Tanh, UnaryFn::LogCosh,
                    UnaryFn::Sin, UnaryFn::Cos,
                ]
                .into_iter()
                .map(|op| (format!("{op:?}"), chain(&a, |x| apply_unary(op, x)), apply_unary(op, a)))
                .collect();
                for op in [UnaryFn::Ln, UnaryFn::Sqrt] {
                    cases.push((format!("{op:?}"), chain(&positive, |x| apply_unary(op, x)), apply_unary(op, positive)));
                }
                for n in [-2, 2, 3] {
                    cases.push((format!("powi {n}"), chain(&a, |x| x.powi(n)), a.powi(n)));
                }
                for (name, got, expected) in cases {
                    assert!(close(got.re, expected.re), "{name} {pattern}");
                    assert_eq!(got.v1.0.is_some(), expected.v1.0.is_some(), "{name} {pattern}");
                    if let (Some(x), Some(y)) = (got.v1.0, expected.v1.0) {
                        assert!(x.iter().zip(y.iter()).all(|(x, y)| close(*x, *y)), "{name} {pattern}: {x} {y}");
                    }
                    let dense = |m: Option<SMatrix<f64, K, K>>| m.unwrap_or_else(SMatrix::zeros);
                    let (x, y) = (dense(got.v2.0), dense(expected.v2.0));
                    assert!(x.iter().zip(y.iter()).all(|(x, y)| close(*x, *y)), "{name} {pattern}: {x} {y}");
                }
            }
        }
    }

    #[test]
    fn functions_of_one_argument_match_num_dual() {
        check_functions::<1>();
        check_functions::<3>();
    }

    #[test]
    fn arithmetic_matches_num_dual() {
        check::<1>();
        check::<2>();
        check::<4>();
    }
}
