//! Deterministic integration rules for expectations over independent standard
//! normal (and Rademacher) variables.
//!
//! A [`Rule`] is just nodes and weights in `f64`. The caller evaluates its
//! integrand at the nodes in whatever number type it likes (plain `f64` or any
//! num-dual type), so derivatives of an expectation are exact derivatives of
//! the discretised integral. Rules available: Gauss-Hermite (1-D and tensor
//! products), Owen-scrambled Sobol quasi-Monte-Carlo, exhaustive Rademacher
//! sign vectors, and products of independent rules.

use super::special::inverse_normal_cdf;
use nalgebra::DMatrix;
use std::iter::Sum;
use std::ops::Mul;
use thiserror::Error;

/// Largest number of points a product rule may have (memory and time guard).
pub const MAX_RULE_POINTS: usize = 5_000_000;
/// Dimensions provided by `sobol_burley`'s direction numbers.
pub const MAX_SOBOL_DIM: usize = sobol_burley::NUM_DIMENSIONS as usize;
/// `sobol_burley` sequences are at most 2^16 points long.
pub const MAX_SOBOL_POINTS: usize = 1 << 16;
/// `rademacher` enumerates all 2^dim sign vectors, so dim stays small.
pub const MAX_RADEMACHER_DIM: usize = 20;

/// Why a rule could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuadratureError {
    #[error(
        "a product Gauss-Hermite rule with {n_per_dim} points in each of {dim} dimensions \
         exceeds {limit} points; use quasi-Monte-Carlo (sobol_normal) for this many dimensions"
    )]
    ProductTooLarge {
        dim: usize,
        n_per_dim: usize,
        limit: usize,
    },
    #[error(
        "combining rules of {left} and {right} points exceeds {limit} points; \
         use quasi-Monte-Carlo (sobol_normal) for the high-dimensional part"
    )]
    CombinationTooLarge {
        left: usize,
        right: usize,
        limit: usize,
    },
    #[error("{rule} supports at most {max} dimensions, {dim} requested")]
    TooManyDimensions {
        rule: &'static str,
        dim: usize,
        max: usize,
    },
    #[error("sobol_normal supports at most {max} points per sequence, {requested} requested")]
    TooManySobolPoints { requested: usize, max: usize },
    #[error("{rule} needs at least one point")]
    NoPoints { rule: &'static str },
}

/// A quadrature rule for `E[f(z)]`, `z` of dimension `dim`:
/// `E[f] ~ sum_i weights[i] * f(point(i))`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub dim: usize,
    /// Row-major, `len() x dim`.
    pub nodes: Vec<f64>,
    /// One per point; they sum to 1.
    pub weights: Vec<f64>,
}

impl Rule {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Coordinates of point `i`.
    pub fn point(&self, i: usize) -> &[f64] {
        &self.nodes[i * self.dim..(i + 1) * self.dim]
    }

    /// `(point, weight)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&[f64], f64)> + '_ {
        (0..self.len()).map(move |i| (self.point(i), self.weights[i]))
    }

    /// `sum_i w_i f(x_i)` in the integrand's own number type (e.g. a dual
    /// number, to differentiate the expectation).
    pub fn expectation<T, F>(&self, mut integrand: F) -> T
    where
        F: FnMut(&[f64]) -> T,
        T: Sum + Mul<f64, Output = T>,
    {
        self.iter().map(|(x, w)| integrand(x) * w).sum()
    }
}

/// Orthonormal probabilists' Hermite polynomials at `x` up to degree `n`,
/// p_{k+1} = (x p_k - sqrt(k) p_{k-1}) / sqrt(k+1), rescaled on the fly so that
/// large nodes of large rules cannot overflow.
struct HermiteSweep {
    /// p_n(x) / p_{n-1}(x): the Newton step is this ratio over sqrt(n).
    last_ratio: f64,
    /// ln sum_{k<n} p_k(x)^2, whose negative exponential is the Gauss weight.
    log_sum_of_squares: f64,
}

fn hermite_sweep(x: f64, n: usize) -> HermiteSweep {
    const RESCALE_ABOVE: f64 = 1e150;
    let (mut previous, mut current) = (0.0_f64, 1.0_f64);
    let mut sum_of_squares = 0.0;
    let mut log_scale = 0.0; // ln of the factor divided out of `current`
    for k in 0..n {
        sum_of_squares += current * current;
        let next = (x * current - (k as f64).sqrt() * previous) / ((k + 1) as f64).sqrt();
        previous = current;
        current = next;
        if current.abs() > RESCALE_ABOVE {
            previous /= RESCALE_ABOVE;
            current /= RESCALE_ABOVE;
            sum_of_squares /= RESCALE_ABOVE * RESCALE_ABOVE;
            log_scale += RESCALE_ABOVE.ln();
        }
    }
    HermiteSweep {
        last_ratio: current / previous,
        log_sum_of_squares: sum_of_squares.ln() + 2.0 * log_scale,
    }
}

/// Nodes and weights of the `n`-point Gauss-Hermite rule for N(0, 1)
/// (probabilists' convention): weights sum to 1 and `sum_i w_i p(x_i) = E p(Z)`
/// for every polynomial of degree <= 2n - 1. Nodes ascend and are exactly
/// symmetric. Works for n in the hundreds; outer weights may underflow to 0.
///
/// Golub-Welsch: the nodes are the eigenvalues of the Jacobi matrix (zero
/// diagonal, off-diagonals sqrt(k)), polished by Newton steps. Weights use the
/// Christoffel formula 1 / sum_k p_k(x)^2 rather than squared eigenvector
/// components, which are only absolutely accurate and so lose the tiny outer
/// weights to round-off.
///
/// # Panics
/// If `n == 0`.
pub fn gauss_hermite(n: usize) -> (Vec<f64>, Vec<f64>) {
    assert!(n >= 1, "gauss_hermite needs at least one node");
    let jacobi = DMatrix::from_fn(n, n, |i, j| {
        if i.abs_diff(j) == 1 {
            (i.max(j) as f64).sqrt()
        } else {
            0.0
        }
    });
    let mut nodes: Vec<f64> = jacobi.symmetric_eigenvalues().iter().copied().collect();
    nodes.sort_by(f64::total_cmp);

    for x in &mut nodes {
        for _ in 0..2 {
            let step = hermite_sweep(*x, n).last_ratio / (n as f64).sqrt();
            // The eigenvalue is already good to ~1e-14; refuse anything wild.
            if step.is_finite() && step.abs() < 1e-6 * (1.0 + x.abs()) {
                *x -= step;
            }
        }
    }
    // Enforce the exact symmetry of the true rule (odd moments vanish exactly).
    for i in 0..n / 2 {
        let half_width = 0.5 * (nodes[n - 1 - i] - nodes[i]);
        nodes[i] = -half_width;
        nodes[n - 1 - i] = half_width;
    }
    if n % 2 == 1 {
        nodes[n / 2] = 0.0;
    }

    let mut weights: Vec<f64> = nodes
        .iter()
        .map(|&x| (-hermite_sweep(x, n).log_sum_of_squares).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    weights.iter_mut().for_each(|w| *w /= total);
    (nodes, weights)
}

/// Tensor-product Gauss-Hermite rule in `dim` dimensions (last coordinate
/// varies fastest). Exact for polynomials of degree <= 2n-1 in each variable.
/// Refuses rules with more than [`MAX_RULE_POINTS`] points.
pub fn product_gauss_hermite(dim: usize, n_per_dim: usize) -> Result<Rule, QuadratureError> {
    if n_per_dim == 0 {
        return Err(QuadratureError::NoPoints {
            rule: "product_gauss_hermite",
        });
    }
    let too_large = QuadratureError::ProductTooLarge {
        dim,
        n_per_dim,
        limit: MAX_RULE_POINTS,
    };
    let n_points = u32::try_from(dim)
        .ok()
        .and_then(|d| n_per_dim.checked_pow(d))
        .filter(|&count| count <= MAX_RULE_POINTS)
        .ok_or(too_large)?;

    let (x, w) = gauss_hermite(n_per_dim);
    let mut nodes = Vec::with_capacity(n_points * dim);
    let mut weights = Vec::with_capacity(n_points);
    let mut digits = vec![0_usize; dim];
    for _ in 0..n_points {
        nodes.extend(digits.iter().map(|&k| x[k]));
        weights.push(digits.iter().map(|&k| w[k]).product());
        // Odometer increment over the multi-index.
        for digit in digits.iter_mut().rev() {
            *digit += 1;
            if *digit < n_per_dim {
                break;
            }
            *digit = 0;
        }
    }
    Ok(Rule {
        dim,
        nodes,
        weights,
    })
}

/// `sobol_burley::sample` returns k / 2^23 for an integer k in [0, 2^23): the
/// top 23 bits of the scrambled 32-bit sample, packed into an f32 mantissa.
const SOBOL_CELLS: f64 = (1_u32 << 23) as f64;

/// Maps a Sobol sample to a standard normal via the midpoint of its 2^-23 cell,
/// (k + 1/2) / 2^23: strictly inside (0, 1), so the quantile stays finite
/// (|z| <= 5.30), and the midpoints of uniformly scrambled cells have mean 1/2.
fn standard_normal_from_sobol(sample: f32) -> f64 {
    let cell = (f64::from(sample) * SOBOL_CELLS).floor();
    inverse_normal_cdf((cell + 0.5) / SOBOL_CELLS)
}

/// Owen-scrambled Sobol points mapped to N(0, I_dim) through the inverse normal
/// CDF, with equal weights. Different `scramble_seed`s give statistically
/// independent randomisations (for error bars). `n_points` should be a power of
/// two, where the Sobol net is balanced (not enforced); it is at most
/// [`MAX_SOBOL_POINTS`], and `dim` at most [`MAX_SOBOL_DIM`].
///
/// With `antithetic`, each point x is followed by -x (2 * n_points points), so
/// odd integrands integrate to zero up to rounding.
pub fn sobol_normal(
    dim: usize,
    n_points: usize,
    scramble_seed: u32,
    antithetic: bool,
) -> Result<Rule, QuadratureError> {
    if dim > MAX_SOBOL_DIM {
        return Err(QuadratureError::TooManyDimensions {
            rule: "sobol_normal",
            dim,
            max: MAX_SOBOL_DIM,
        });
    }
    if n_points == 0 {
        return Err(QuadratureError::NoPoints {
            rule: "sobol_normal",
        });
    }
    if n_points > MAX_SOBOL_POINTS {
        return Err(QuadratureError::TooManySobolPoints {
            requested: n_points,
            max: MAX_SOBOL_POINTS,
        });
    }
    let copies = if antithetic { 2 } else { 1 };
    let total = n_points * copies;
    let mut nodes = Vec::with_capacity(total * dim);
    // Bounds checked above, so the u32 casts are lossless.
    for index in 0..n_points as u32 {
        let start = nodes.len();
        nodes
            .extend((0..dim as u32).map(|d| {
                standard_normal_from_sobol(sobol_burley::sample(index, d, scramble_seed))
            }));
        if antithetic {
            nodes.extend_from_within(start..);
            nodes[start + dim..].iter_mut().for_each(|z| *z = -*z);
        }
    }
    Ok(Rule {
        dim,
        nodes,
        weights: vec![1.0 / total as f64; total],
    })
}

/// All 2^dim vectors of independent fair signs (+-1), equally weighted: exact
/// for expectations over Rademacher variables. `dim` <= [`MAX_RADEMACHER_DIM`].
pub fn rademacher(dim: usize) -> Result<Rule, QuadratureError> {
    if dim > MAX_RADEMACHER_DIM {
        return Err(QuadratureError::TooManyDimensions {
            rule: "rademacher",
            dim,
            max: MAX_RADEMACHER_DIM,
        });
    }
    let n_points = 1_usize << dim;
    let nodes = (0..n_points)
        .flat_map(|i| {
            (0..dim).map(move |d| {
                if (i >> (dim - 1 - d)) & 1 == 1 {
                    1.0
                } else {
                    -1.0
                }
            })
        })
        .collect();
    Ok(Rule {
        dim,
        nodes,
        weights: vec![1.0 / n_points as f64; n_points],
    })
}

/// Product of two independent rules: coordinates `[a, b]` (dims add), weights
/// multiply, `a`'s index outermost. Refuses more than [`MAX_RULE_POINTS`] points.
pub fn combine(a: &Rule, b: &Rule) -> Result<Rule, QuadratureError> {
    let n_points = a
        .len()
        .checked_mul(b.len())
        .filter(|&count| count <= MAX_RULE_POINTS)
        .ok_or(QuadratureError::CombinationTooLarge {
            left: a.len(),
            right: b.len(),
            limit: MAX_RULE_POINTS,
        })?;
    let dim = a.dim + b.dim;
    let mut nodes = Vec::with_capacity(n_points * dim);
    let mut weights = Vec::with_capacity(n_points);
    for (xa, wa) in a.iter() {
        for (xb, wb) in b.iter() {
            nodes.extend_from_slice(xa);
            nodes.extend_from_slice(xb);
            weights.push(wa * wb);
        }
    }
    Ok(Rule {
        dim,
        nodes,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use num_dual::{Dual64, DualNum};

    fn double_factorial(n: i64) -> f64 {
        (1..=n).rev().step_by(2).map(|k| k as f64).product()
    }

    fn moment(nodes: &[f64], weights: &[f64], power: i32) -> f64 {
        nodes
            .iter()
            .zip(weights)
            .map(|(x, w)| w * x.powi(power))
            .sum()
    }

    #[test]
    fn gauss_hermite_integrates_polynomials_exactly() {
        for n in [1, 2, 3, 5, 10, 20, 40] {
            let (x, w) = gauss_hermite(n);
            for power in 0..(2 * n as i32) {
                let got = moment(&x, &w, power);
                if power % 2 == 1 {
                    // Zero up to rounding in the summation order.
                    let scale = double_factorial(power as i64);
                    assert!(
                        got.abs() < 1e-15 * scale,
                        "n = {n}, odd power {power}: {got}"
                    );
                } else {
                    let exact = double_factorial(power as i64 - 1);
                    assert_relative_eq!(got, exact, max_relative = 1e-12);
                }
            }
        }
    }

    #[test]
    fn gauss_hermite_three_points_match_the_closed_form() {
        let (x, w) = gauss_hermite(3);
        let root3 = 3.0_f64.sqrt();
        for (got, expected) in x.iter().zip([-root3, 0.0, root3]) {
            assert_relative_eq!(*got, expected, max_relative = 1e-15);
        }
        for (got, expected) in w.iter().zip([1.0 / 6.0, 2.0 / 3.0, 1.0 / 6.0]) {
            assert_relative_eq!(*got, expected, max_relative = 1e-15);
        }
    }

    #[test]
    fn gauss_hermite_integrates_cosine() {
        let (x, w) = gauss_hermite(30);
        let expectation: f64 = x.iter().zip(&w).map(|(x, w)| w * x.cos()).sum();
        assert!((expectation - (-0.5_f64).exp()).abs() < 1e-14);
    }

    #[test]
    fn gauss_hermite_handles_two_hundred_nodes() {
        let n = 200;
        let (x, w) = gauss_hermite(n);
        assert_eq!((x.len(), w.len()), (n, n));
        assert!(x.windows(2).all(|pair| pair[0] < pair[1]));
        for i in 0..n {
            assert_eq!(x[i], -x[n - 1 - i]);
            assert_eq!(w[i], w[n - 1 - i]);
            assert!(w[i].is_finite() && w[i] >= 0.0);
        }
        assert_relative_eq!(w.iter().sum::<f64>(), 1.0, max_relative = 1e-15);
        assert_relative_eq!(moment(&x, &w, 2), 1.0, max_relative = 1e-13);
        assert_relative_eq!(moment(&x, &w, 4), 3.0, max_relative = 1e-13);
        // High moments are carried by the outermost nodes: their tiny weights are right too.
        for power in [10, 100, 200] {
            assert_relative_eq!(
                moment(&x, &w, power),
                double_factorial(power as i64 - 1),
                max_relative = 1e-13
            );
        }
        // Largest zero of He_200 is ~27.5 (asymptotically sqrt(4n + 2)).
        assert!(x[n - 1] > 26.0 && x[n - 1] < 28.5);
        // The outermost weight is ~1e-163 but still resolved, not flushed.
        assert!(w[0] > 0.0 && w[0] < 1e-100);
    }

    #[test]
    fn product_rule_integrates_exponentials() {
        let (a, b) = (0.3, -0.7);
        let rule = product_gauss_hermite(2, 20).unwrap();
        assert_eq!((rule.dim, rule.len(), rule.nodes.len()), (2, 400, 800));
        let expectation = rule.expectation(|z| (a * z[0] + b * z[1]).exp());
        assert_relative_eq!(
            expectation,
            ((a * a + b * b) / 2.0).exp(),
            max_relative = 1e-14
        );
        assert_relative_eq!(rule.weights.iter().sum::<f64>(), 1.0, max_relative = 1e-14);
    }

    #[test]
    fn product_rule_refuses_too_many_points() {
        let error = product_gauss_hermite(10, 5).unwrap_err();
        assert!(matches!(error, QuadratureError::ProductTooLarge { .. }));
        assert!(error.to_string().contains("quasi-Monte-Carlo"));
        assert!(product_gauss_hermite(100, 200).is_err()); // overflows usize
        assert!(product_gauss_hermite(3, 0).is_err());
        let empty_product = product_gauss_hermite(0, 7).unwrap();
        assert_eq!((empty_product.len(), empty_product.weights[0]), (1, 1.0));
    }

    #[test]
    fn derivatives_flow_through_the_discretised_expectation() {
        // d/dtheta E exp(theta z) = theta exp(theta^2 / 2).
        let theta = Dual64::new(0.8, 1.0);
        let rule = product_gauss_hermite(1, 30).unwrap();
        let expectation = rule.expectation(|z| (theta * z[0]).exp());
        assert_relative_eq!(
            expectation.eps,
            0.8 * (0.32_f64).exp(),
            max_relative = 1e-13
        );
    }

    #[test]
    fn sobol_normal_has_standard_moments() {
        let (dim, n) = (6, 1 << 14);
        let rule = sobol_normal(dim, n, 7, false).unwrap();
        assert_eq!((rule.len(), rule.dim), (n, dim));
        assert!(rule.nodes.iter().all(|z| z.is_finite() && z.abs() < 5.3));
        for i in 0..dim {
            let mean = rule.expectation(|z| z[i]);
            let second = rule.expectation(|z| z[i] * z[i]);
            assert!(mean.abs() < 1e-2, "dimension {i}: mean {mean}");
            assert!(
                (second - 1.0).abs() < 1e-2,
                "dimension {i}: second moment {second}"
            );
        }
        // Different seeds randomise differently.
        assert_ne!(rule.nodes, sobol_normal(dim, n, 8, false).unwrap().nodes);
    }

    #[test]
    fn sobol_burley_resolution_is_two_to_the_minus_23() {
        for index in 0..4096 {
            let u = f64::from(sobol_burley::sample(index, 3, 11));
            let scaled = u * SOBOL_CELLS;
            assert!((0.0..1.0).contains(&u) && scaled == scaled.floor());
        }
    }

    #[test]
    fn antithetic_sobol_means_vanish() {
        let rule = sobol_normal(5, 1 << 10, 3, true).unwrap();
        assert_eq!(rule.len(), 2 << 10);
        for i in 0..5 {
            assert!(rule.expectation(|z| z[i]).abs() < 1e-15);
            assert!(rule.expectation(|z| z[i].powi(3)).abs() < 1e-14);
        }
        assert_eq!(rule.point(0)[2], -rule.point(1)[2]);
    }

    #[test]
    fn sobol_normal_checks_its_limits() {
        assert!(matches!(
            sobol_normal(257, 8, 0, false),
            Err(QuadratureError::TooManyDimensions { .. })
        ));
        assert!(matches!(
            sobol_normal(2, (1 << 16) + 1, 0, false),
            Err(QuadratureError::TooManySobolPoints { .. })
        ));
        assert!(matches!(
            sobol_normal(2, 0, 0, false),
            Err(QuadratureError::NoPoints { .. })
        ));
        assert_eq!(sobol_normal(256, 1 << 16, 0, false).unwrap().len(), 1 << 16);
    }

    #[test]
    fn rademacher_enumerates_all_signs() {
        let rule = rademacher(3).unwrap();
        assert_eq!(rule.len(), 8);
        for i in 0..3 {
            assert_eq!(rule.expectation(|s| s[i]), 0.0);
            for j in 0..3 {
                let expected = if i == j { 1.0 } else { 0.0 };
                assert_eq!(rule.expectation(|s| s[i] * s[j]), expected);
            }
        }
        assert_eq!(rademacher(0).unwrap().len(), 1);
        assert!(rademacher(21).is_err());
    }

    #[test]
    fn combine_multiplies_independent_rules() {
        let gaussian = product_gauss_hermite(1, 10).unwrap();
        let signs = rademacher(2).unwrap();
        let joint = combine(&gaussian, &signs).unwrap();
        assert_eq!((joint.dim, joint.len()), (3, 40));
        assert_eq!(
            joint.point(5),
            &[gaussian.point(1)[0], signs.point(1)[0], signs.point(1)[1]][..]
        );
        assert_relative_eq!(joint.weights.iter().sum::<f64>(), 1.0, max_relative = 1e-14);
        let expectation = joint.expectation(|x| (x[0] * x[1] + x[2]).powi(2));
        assert_relative_eq!(expectation, 2.0, max_relative = 1e-13);

        let big = product_gauss_hermite(3, 100).unwrap();
        let error = combine(&big, &gaussian).unwrap_err();
        assert!(matches!(error, QuadratureError::CombinationTooLarge { .. }));
        assert!(error.to_string().contains("quasi-Monte-Carlo"));
    }
}
