//! The gradient passes of the outer solve run every integration node's body in first-order
//! vector duals (`DualSVec64<N>`, up to 16 directions: 144 bytes a number). num-dual's
//! operators build each result in temporaries that are then copied into the destination
//! register, and those copies were a sixth of a LoRA solve. Here sums, differences, products
//! and quotients write their entries straight into the destination with num-dual's formulas
//! in the same order (an absent derivative part is zero and is skipped, as there), so the
//! results are num-dual's. Functions of one argument and integer powers take one chain-rule
//! step with f, f' from a scalar dual. Every other instruction goes through the generic
//! interpreter.

use nalgebra::SVector;
use num_dual::{Derivative, Dual64, DualNum, DualSVec64};

use super::tape::{apply_unary, step, Interpreter};
use super::EvalError;
use crate::ir::{BinaryFn, Instr, UnaryFn};

/// The interpreter for `DualSVec64<N>` registers.
pub struct FirstOrder;

impl<const N: usize> Interpreter<DualSVec64<N>> for FirstOrder {
    #[inline(always)]
    fn step(instr: &Instr, r: &mut [DualSVec64<N>]) -> Result<(), EvalError> {
        match instr {
            Instr::Binary { op, dst, left, right } if matches!(op, BinaryFn::Add | BinaryFn::Sub | BinaryFn::Mul | BinaryFn::Div) => {
                binary(*op, r, *dst, *left, *right);
            }
            // Step and sign are constants: the generic path keeps their derivatives absent.
            Instr::Unary { op, dst, src } if !matches!(op, UnaryFn::Step | UnaryFn::Sign) => {
                let scalar = apply_unary(*op, Dual64::new(r[*src].re, 1.0));
                chain(r, *dst, *src, scalar);
            }
            Instr::PowI { dst, src, exponent } => {
                let scalar = Dual64::new(r[*src].re, 1.0).powi(*exponent);
                chain(r, *dst, *src, scalar);
            }
            other => step(other, r)?,
        }
        Ok(())
    }
}

/// The derivative entries of a register, copied out (so the destination can be written).
#[inline(always)]
fn entries<const N: usize>(x: &DualSVec64<N>) -> Option<[f64; N]> {
    x.eps.0.as_ref().map(|m| std::array::from_fn(|j| m[j]))
}

/// Write a result into register `dst`: its value, and its derivative entries if any.
#[inline(always)]
fn write<const N: usize>(r: &mut [DualSVec64<N>], dst: usize, re: f64, entry: Option<impl Fn(usize) -> f64>) {
    let target = &mut r[dst];
    target.re = re;
    match entry {
        None => target.eps = Derivative::none(),
        Some(entry) => {
            let eps = target.eps.0.get_or_insert_with(SVector::zeros);
            for (j, e) in eps.iter_mut().enumerate() {
                *e = entry(j);
            }
        }
    }
}

/// `f(x)` from `f` on a scalar dual at x's value: `f(x) + f'(x) dx`.
#[inline(always)]
fn chain<const N: usize>(r: &mut [DualSVec64<N>], dst: usize, src: usize, scalar: Dual64) {
    let a = entries(&r[src]);
    write(r, dst, scalar.re, a.map(|a| move |j: usize| a[j] * scalar.eps));
}

#[inline(always)]
fn binary<const N: usize>(op: BinaryFn, r: &mut [DualSVec64<N>], dst: usize, left: usize, right: usize) {
    let (a, b) = (r[left].re, r[right].re);
    let (x, y) = (entries(&r[left]), entries(&r[right]));
    // num-dual: x + y, x - y, x b + y a, ((x b - y a) inv) inv, an absent term skipped.
    match op {
        BinaryFn::Add => match (x, y) {
            (Some(x), Some(y)) => write(r, dst, a + b, Some(|j: usize| x[j] + y[j])),
            (Some(x), None) | (None, Some(x)) => write(r, dst, a + b, Some(|j: usize| x[j])),
            (None, None) => write(r, dst, a + b, None::<fn(usize) -> f64>),
        },
        BinaryFn::Sub => match (x, y) {
            (Some(x), Some(y)) => write(r, dst, a - b, Some(|j: usize| x[j] - y[j])),
            (Some(x), None) => write(r, dst, a - b, Some(|j: usize| x[j])),
            (None, Some(y)) => write(r, dst, a - b, Some(|j: usize| -y[j])),
            (None, None) => write(r, dst, a - b, None::<fn(usize) -> f64>),
        },
        BinaryFn::Mul => match (x, y) {
            (Some(x), Some(y)) => write(r, dst, a * b, Some(|j: usize| x[j] * b + y[j] * a)),
            (Some(x), None) => write(r, dst, a * b, Some(|j: usize| x[j] * b)),
            (None, Some(y)) => write(r, dst, a * b, Some(|j: usize| y[j] * a)),
            (None, None) => write(r, dst, a * b, None::<fn(usize) -> f64>),
        },
        BinaryFn::Div => {
            let inv = b.recip();
            match (x, y) {
                (Some(x), Some(y)) => write(r, dst, a * inv, Some(|j: usize| (x[j] * b - y[j] * a) * inv * inv)),
                (Some(x), None) => write(r, dst, a * inv, Some(|j: usize| x[j] * b * inv * inv)),
                (None, Some(y)) => write(r, dst, a * inv, Some(|j: usize| -(y[j] * a) * inv * inv)),
                (None, None) => write(r, dst, a * inv, None::<fn(usize) -> f64>),
            }
        }
        _ => unreachable!("only arithmetic is specialised"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::tape::Generic;

    /// A number with or without a derivative part, from a small pseudo-random stream.
    fn sample<const N: usize>(seed: &mut u64, with_derivative: bool) -> DualSVec64<N> {
        let mut next = || {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
        };
        let re = next();
        DualSVec64::new(re, Derivative::new(with_derivative.then(|| SVector::<f64, N>::from_fn(|_, _| next()))))
    }

    fn same(x: f64, y: f64, exact: bool) -> bool {
        if exact {
            x == y
        } else {
            (x - y).abs() <= 1e-12 * (1.0 + x.abs().max(y.abs()))
        }
    }

    /// Every specialised instruction against the generic interpreter, with each operand's
    /// derivative part present or absent and the destination equal to an operand or not.
    fn check<const N: usize>() {
        let mut seed = 5;
        let mut instructions: Vec<(Instr, bool)> = [BinaryFn::Add, BinaryFn::Sub, BinaryFn::Mul, BinaryFn::Div]
            .into_iter()
            .flat_map(|op| [(Instr::Binary { op, dst: 2, left: 0, right: 1 }, true), (Instr::Binary { op, dst: 0, left: 0, right: 1 }, true)])
            .collect();
        for op in [UnaryFn::Neg, UnaryFn::Exp, UnaryFn::Sigmoid, UnaryFn::LogCosh, UnaryFn::Erf, UnaryFn::Tanh, UnaryFn::Abs] {
            instructions.push((Instr::Unary { op, dst: 2, src: 0 }, false));
        }
        instructions.push((Instr::PowI { dst: 1, src: 1, exponent: 3 }, false));
        for pattern in 0..8u32 {
            for (instr, exact) in &instructions {
                let registers: Vec<DualSVec64<N>> = (0..3).map(|i| sample(&mut seed, pattern & (1 << i) != 0)).collect();
                let mut got = registers.clone();
                let mut expected = registers;
                <FirstOrder as Interpreter<DualSVec64<N>>>::step(instr, &mut got).unwrap();
                <Generic as Interpreter<DualSVec64<N>>>::step(instr, &mut expected).unwrap();
                for (g, e) in got.iter().zip(&expected) {
                    assert!(same(g.re, e.re, *exact), "{instr:?} {pattern}");
                    assert_eq!(g.eps.0.is_some(), e.eps.0.is_some(), "{instr:?} {pattern}");
                    if let (Some(x), Some(y)) = (g.eps.0, e.eps.0) {
                        assert!(x.iter().zip(y.iter()).all(|(x, y)| same(*x, *y, *exact)), "{instr:?} {pattern}: {x} {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn first_order_steps_match_num_dual() {
        check::<1>();
        check::<4>();
        check::<16>();
    }
}
