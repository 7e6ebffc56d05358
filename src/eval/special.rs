//! Elementary and special functions over num-dual number types.
//!
//! This module owns every scalar function the evaluator needs that num-dual
//! lacks (error functions, Gaussian tails and their logarithms, the inverse
//! normal CDF) plus numerically stable compositions of ones it has (sigmoid,
//! softplus, log-sum-exp). Every `fn f<D>(x: D) -> D` is exact to every
//! derivative order the type `D` carries (`D::NDERIV`): derivatives come either
//! from closed forms fed through [`taylor`], or from plain dual arithmetic on
//! well-conditioned expressions.

use num_dual::DualNum;
use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_SQRT_PI};

/// 1/sqrt(pi).
const FRAC_1_SQRT_PI: f64 = 0.564_189_583_547_756_3;
/// 1/sqrt(2 pi), the peak of the standard normal density.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
/// sqrt(2/pi).
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
/// sqrt(pi/2).
const SQRT_PI_OVER_2: f64 = 1.253_314_137_315_500_3;

// ---------------------------------------------------------------------------
// Taylor mechanism
// ---------------------------------------------------------------------------

/// Lifts a function known only through its derivatives at `x0 = x.re()` to any
/// dual type: returns `sum_n derivatives[n] * delta^n / n!` for
/// `n = 0..=D::NDERIV`, with `delta = x - x0`.
///
/// `delta` has zero real part, so `delta^(NDERIV+1)` vanishes exactly in every
/// num-dual type and the truncated series *is* `f(x)` to all carried orders.
///
/// # Panics
/// If `derivatives.len() <= D::NDERIV`.
pub fn taylor<D: DualNum<Primitive = f64> + Copy>(x: D, derivatives: &[f64]) -> D {
    let order = D::NDERIV;
    assert!(
        derivatives.len() > order,
        "taylor: the type carries {order} derivatives, so {} values are needed, got {}",
        order + 1,
        derivatives.len()
    );
    let delta = x - D::from(x.re());
    // Horner's rule from the top coefficient down, dividing n! out on the way.
    let mut factorial: f64 = (1..=order).map(|k| k as f64).product();
    let mut sum = D::from(derivatives[order] / factorial);
    for n in (0..order).rev() {
        factorial /= (n + 1) as f64;
        sum = sum * delta + derivatives[n] / factorial;
    }
    sum
}

/// Derivatives of orders `0..count` at `x0` of the Gaussian bump
/// `b(x) = value_at_x0 * exp(-c (x^2 - x0^2))`, each multiplied by `scale`.
/// Uses `d^n/dx^n exp(-c x^2) = (-1)^n P_n(x) exp(-c x^2)` with
/// `P_{n+1} = 2c (x P_n - n P_{n-1})` (physicists' Hermite for c = 1,
/// probabilists' for c = 1/2).
fn gaussian_bump_derivatives(
    x0: f64,
    value_at_x0: f64,
    two_c: f64,
    scale: f64,
    count: usize,
) -> Vec<f64> {
    if value_at_x0 == 0.0 {
        // The bump underflowed; skip the polynomial, which may overflow (inf * 0).
        return vec![0.0; count];
    }
    let mut out = Vec::with_capacity(count);
    let (mut previous, mut current) = (0.0, 1.0);
    for n in 0..count {
        let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
        out.push(scale * sign * current * value_at_x0);
        let next = two_c * (x0 * current - n as f64 * previous);
        previous = current;
        current = next;
    }
    out
}

/// `exp(-c x^2)` without the `~c x^2` ulps that rounding `x*x` would cost:
/// `x` is split into a head on a 1/16 grid (whose square is exact) and a tail.
fn exp_neg_c_square(x: f64, c: f64) -> f64 {
    let y = x.abs();
    if c * y * y > 800.0 {
        return 0.0; // below the smallest subnormal; also keeps inf - inf out
    }
    let head = (y * 16.0).trunc() / 16.0;
    (-c * head * head).exp() * (-c * (y - head) * (y + head)).exp()
}

// ---------------------------------------------------------------------------
// Error function: W. J. Cody, "Rational Chebyshev approximations for the error
// function", Math. Comp. 23 (1969) 631-638, as in the SPECFUN routine CALERF.
// ---------------------------------------------------------------------------

/// Below this |x| erf itself is approximated; above, the scaled erfc.
const CODY_SMALL: f64 = 0.46875;
// Coefficients keep all published digits (beyond f64) so they can be checked
// against the source; hence the excessive_precision allowances.
#[allow(clippy::excessive_precision)]
const ERF_NUM: [f64; 5] = [
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
];
#[allow(clippy::excessive_precision)]
const ERF_DEN: [f64; 4] = [
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
];
#[allow(clippy::excessive_precision)]
const ERFCX_MID_NUM: [f64; 9] = [
    5.64188496988670089e-1,
    8.88314979438837594e0,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
];
#[allow(clippy::excessive_precision)]
const ERFCX_MID_DEN: [f64; 8] = [
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
];
#[allow(clippy::excessive_precision)]
const ERFCX_TAIL_NUM: [f64; 6] = [
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
];
#[allow(clippy::excessive_precision)]
const ERFCX_TAIL_DEN: [f64; 5] = [
    2.56852019228982242e00,
    1.87295284992346047e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
];

/// erf(x) for |x| <= CODY_SMALL (rational in x^2).
fn erf_small(x: f64) -> f64 {
    let x2 = x * x;
    let mut num = x2 * ERF_NUM[4];
    let mut den = x2;
    for i in 0..3 {
        num = (num + ERF_NUM[i]) * x2;
        den = (den + ERF_DEN[i]) * x2;
    }
    x * (num + ERF_NUM[3]) / (den + ERF_DEN[3])
}

/// Scaled complement erfcx(y) = exp(y^2) erfc(y) for y > CODY_SMALL.
fn erfcx_large(y: f64) -> f64 {
    if y <= 4.0 {
        let mut num = y * ERFCX_MID_NUM[8];
        let mut den = y;
        for i in 0..7 {
            num = (num + ERFCX_MID_NUM[i]) * y;
            den = (den + ERFCX_MID_DEN[i]) * y;
        }
        (num + ERFCX_MID_NUM[7]) / (den + ERFCX_MID_DEN[7])
    } else {
        // Asymptotic form (1/sqrt(pi) - z R(z)) / y with z = 1/y^2.
        let z = 1.0 / (y * y);
        let mut num = z * ERFCX_TAIL_NUM[5];
        let mut den = z;
        for i in 0..4 {
            num = (num + ERFCX_TAIL_NUM[i]) * z;
            den = (den + ERFCX_TAIL_DEN[i]) * z;
        }
        let correction = z * (num + ERFCX_TAIL_NUM[4]) / (den + ERFCX_TAIL_DEN[4]);
        (FRAC_1_SQRT_PI - correction) / y
    }
}

/// erfc(|x|) for |x| > CODY_SMALL; reaches the subnormal range (x < ~27.2).
fn erfc_upper(y: f64) -> f64 {
    exp_neg_c_square(y, 1.0) * erfcx_large(y)
}

fn erf_f64(x: f64) -> f64 {
    if x.abs() <= CODY_SMALL {
        erf_small(x)
    } else if x > 0.0 {
        1.0 - erfc_upper(x)
    } else {
        erfc_upper(-x) - 1.0
    }
}

fn erfc_f64(x: f64) -> f64 {
    if x.abs() <= CODY_SMALL {
        1.0 - erf_small(x)
    } else if x > 0.0 {
        erfc_upper(x)
    } else {
        2.0 - erfc_upper(-x)
    }
}

/// erf'(x0), erf''(x0), ... : erf^(n+1)(x) = 2/sqrt(pi) (-1)^n H_n(x) exp(-x^2).
fn erf_slope_derivatives(x0: f64, count: usize) -> Vec<f64> {
    gaussian_bump_derivatives(x0, exp_neg_c_square(x0, 1.0), 2.0, FRAC_2_SQRT_PI, count)
}

/// Error function erf(x) = 2/sqrt(pi) int_0^x exp(-t^2) dt (~1e-16 relative).
pub fn erf<D: DualNum<Primitive = f64> + Copy>(x: D) -> D {
    let x0 = x.re();
    let mut derivatives = vec![erf_f64(x0)];
    derivatives.extend(erf_slope_derivatives(x0, D::NDERIV));
    taylor(x, &derivatives)
}

/// Complementary error function erfc(x) = 1 - erf(x), accurate relative to
/// itself deep into the tail (nonzero until x ~ 27.2, where it turns subnormal).
pub fn erfc<D: DualNum<Primitive = f64> + Copy>(x: D) -> D {
    let x0 = x.re();
    let mut derivatives = vec![erfc_f64(x0)];
    derivatives.extend(erf_slope_derivatives(x0, D::NDERIV).into_iter().map(|d| -d));
    taylor(x, &derivatives)
}

// ---------------------------------------------------------------------------
// Standard normal distribution
// ---------------------------------------------------------------------------

fn gaussian_pdf_f64(x: f64) -> f64 {
    FRAC_1_SQRT_2PI * exp_neg_c_square(x, 0.5)
}

/// H(x) = P(Z > x) for x > CODY_SMALL * sqrt(2), as phi(x) sqrt(pi/2) erfcx(x/sqrt 2):
/// the rounding of x/sqrt(2) then only enters the slowly varying erfcx.
fn gaussian_tail_upper(x: f64) -> f64 {
    gaussian_pdf_f64(x) * SQRT_PI_OVER_2 * erfcx_large(x * FRAC_1_SQRT_2)
}

fn gaussian_tail_f64(x: f64) -> f64 {
    let y = x * FRAC_1_SQRT_2;
    if y.abs() <= CODY_SMALL {
        0.5 - 0.5 * erf_small(y)
    } else if x > 0.0 {
        gaussian_tail_upper(x)
    } else {
        1.0 - gaussian_tail_upper(-x)
    }
}

/// phi^(n)(x0) * scale for n = 0..count: phi^(n) = (-1)^n He_n(x) phi(x).
fn gaussian_pdf_derivatives(x0: f64, scale: f64, count: usize) -> Vec<f64> {
    gaussian_bump_derivatives(x0, gaussian_pdf_f64(x0), 1.0, scale, count)
}

/// Standard normal density phi(x) = exp(-x^2/2) / sqrt(2 pi).
pub fn gaussian_pdf<D: DualNum<Primitive = f64> + Copy>(x: D) -> D {
    taylor(x, &gaussian_pdf_derivatives(x.re(), 1.0, D::NDERIV + 1))
}

/// Gaussian tail H(x) = P(Z > x) = erfc(x/sqrt 2)/2, accurate relative to
/// itself for large x (H' = -phi).
pub fn gaussian_tail<D: DualNum<Primitive = f64> + Copy>(x: D) -> D {
    let x0 = x.re();
    let mut derivatives = vec![gaussian_tail_f64(x0)];
    derivatives.extend(gaussian_pdf_derivatives(x0, -1.0, D::NDERIV));
    taylor(x, &derivatives)
}

/// Standard normal CDF Phi(x) = H(-x).
pub fn gaussian_cdf<D: DualNum<Primitive = f64> + Copy>(x: D) -> D {
    gaussian_tail(-x)
}

/// Up to this point `log_gaussian_tail` differentiates through the
/// inverse-Mills-ratio recursion, beyond it through a (slower) continued
/// fraction. The recursion's k-th derivative loses ~x^(2k) ulps for large x:
/// the first derivative (-r) loses nothing, the second ~x^2 (2e-14 at x = 10),
/// the third and fourth too much beyond x ~ 2.
fn mills_recursion_limit(nderiv: usize) -> f64 {
    match nderiv {
        0 | 1 => f64::INFINITY,
        2 => 10.0,
        _ => 2.0,
    }
}

/// Inverse Mills ratio phi(x)/H(x), without underflow for large x.
fn inverse_mills_ratio_f64(x: f64) -> f64 {
    let y = x * FRAC_1_SQRT_2;
    if y > CODY_SMALL {
        // phi / H = sqrt(2/pi) / erfcx(x / sqrt 2)
        SQRT_2_OVER_PI / erfcx_large(y)
    } else {
        gaussian_pdf_f64(x) / gaussian_tail_f64(x) // H >= 1/4 here
    }
}

/// Inverse Mills ratio r = phi/H and its derivatives r', ..., r^(max_order) at x0.
/// From H' = -phi and phi' = -x phi: r' = r (r - x). Writing u = r - x
/// (u' = r' - 1, u^(k) = r^(k) for k >= 2), Leibniz gives
/// r^(n+1) = sum_k C(n,k) r^(k) u^(n-k).
///
/// Well conditioned for x0 <= 0, but for large positive x0 the n-th derivative
/// loses ~x0^(2n) ulps to cancellation (r ~ x + 1/x), hence the limits above.
fn inverse_mills_derivatives(x0: f64, max_order: usize) -> Vec<f64> {
    let mut r = Vec::with_capacity(max_order + 1);
    r.push(inverse_mills_ratio_f64(x0));
    for n in 0..max_order {
        let gap = |j: usize, r: &[f64]| match j {
            0 => r[0] - x0,
            1 => r[1] - 1.0,
            _ => r[j],
        };
        let mut sum = 0.0;
        let mut binomial = 1.0;
        for k in 0..=n {
            sum += binomial * r[k] * gap(n - k, &r);
            binomial = binomial * (n - k) as f64 / (k + 1) as f64;
        }
        r.push(sum);
    }
    r
}

/// u(x) = phi(x)/H(x) - x for x > 0 from Laplace's continued fraction
/// u = 1/(x + 2/(x + 3/(x + ...))), evaluated bottom-up in dual arithmetic.
/// All partial terms are positive, so nothing cancels at any derivative order;
/// the depth (~900/x^2 levels) makes the truncation error < 1e-17 relative
/// for the value and the first four derivatives when x >= 1.5.
fn mills_gap_continued_fraction<D: DualNum<Primitive = f64> + Copy>(x: D) -> D {
    let x0 = x.re();
    let depth = 20 + (900.0 / (x0 * x0)).ceil() as usize;
    let mut denominator = x;
    for k in (2..=depth).rev() {
        denominator = x + denominator.recip() * k as f64;
    }
    denominator.recip()
}

fn log_gaussian_tail_f64(x: f64) -> f64 {
    let y = x * FRAC_1_SQRT_2;
    if x < 0.0 {
        (-gaussian_tail_f64(-x)).ln_1p()
    } else if y <= CODY_SMALL {
        gaussian_tail_f64(x).ln()
    } else {
        // H = exp(-x^2/2) erfcx(y) / 2, so the exponent never underflows.
        -0.5 * x * x + (0.5 * erfcx_large(y)).ln()
    }
}

/// ln H(x) = ln P(Z > x), finite and accurate for very large x (ln H(1e3) ~ -5e5)
/// and for very negative x (ln H(-40) = -3.7e-350, i.e. -0).
pub fn log_gaussian_tail<D: DualNum<Primitive = f64> + Copy>(x: D) -> D {
    let x0 = x.re();
    let value = log_gaussian_tail_f64(x0);
    if x0 > mills_recursion_limit(D::NDERIV) {
        // ln H = ln phi - ln r = -x^2/2 - ln(x + u) + const: a sum of terms
        // without cancellation, so dual arithmetic differentiates it cleanly.
        // The constant is dropped because the real part is replaced by `value`.
        let log_tail_up_to_constant = x * x * (-0.5) - (x + mills_gap_continued_fraction(x)).ln();
        return log_tail_up_to_constant + (value - log_tail_up_to_constant.re());
    }
    // g = ln H: g' = -r, g^(n+1) = -r^(n) with r the inverse Mills ratio.
    let mut derivatives = vec![value];
    if D::NDERIV > 0 {
        derivatives.extend(
            inverse_mills_derivatives(x0, D::NDERIV - 1)
                .into_iter()
                .map(|r| -r),
        );
    }
    taylor(x, &derivatives)
}

/// ln Phi(x) = ln H(-x), stable for very negative x.
pub fn log_gaussian_cdf<D: DualNum<Primitive = f64> + Copy>(x: D) -> D {
    log_gaussian_tail(-x)
}

/// Quantile of the standard normal, Phi^{-1}(p): Wichura's AS241 (PPND16),
/// ~1e-16 relative. Returns -inf / +inf at p = 0 / 1 and NaN outside [0, 1].
#[allow(clippy::excessive_precision)] // coefficients as published in AS241
pub fn inverse_normal_cdf(p: f64) -> f64 {
    const CENTRAL_NUM: [f64; 8] = [
        3.3871328727963666080e0,
        1.3314166789178437745e2,
        1.9715909503065514427e3,
        1.3731693765509461125e4,
        4.5921953931549871457e4,
        6.7265770927008700853e4,
        3.3430575583588128105e4,
        2.5090809287301226727e3,
    ];
    const CENTRAL_DEN: [f64; 8] = [
        1.0,
        4.2313330701600911252e1,
        6.8718700749205790830e2,
        5.3941960214247511077e3,
        2.1213794301586595867e4,
        3.9307895800092710610e4,
        2.8729085735721942674e4,
        5.2264952788528545610e3,
    ];
    const NEAR_NUM: [f64; 8] = [
        1.42343711074968357734e0,
        4.63033784615654529590e0,
        5.76949722146069140550e0,
        3.64784832476320460504e0,
        1.27045825245236838258e0,
        2.41780725177450611770e-1,
        2.27238449892691845833e-2,
        7.74545014278341407640e-4,
    ];
    const NEAR_DEN: [f64; 8] = [
        1.0,
        2.05319162663775882187e0,
        1.67638483018380384940e0,
        6.89767334985100004550e-1,
        1.48103976427480074590e-1,
        1.51986665636164571966e-2,
        5.47593808499534494600e-4,
        1.05075007164441684324e-9,
    ];
    const FAR_NUM: [f64; 8] = [
        6.65790464350110377720e0,
        5.46378491116411436990e0,
        1.78482653991729133580e0,
        2.96560571828504891230e-1,
        2.65321895265761230930e-2,
        1.24266094738807843860e-3,
        2.71155556874348757815e-5,
        2.01033439929228813265e-7,
    ];
    const FAR_DEN: [f64; 8] = [
        1.0,
        5.99832206555887937690e-1,
        1.36929880922735805310e-1,
        1.48753612908506148525e-2,
        7.86869131145613259100e-4,
        1.84631831751005468180e-5,
        1.42151175831644588870e-7,
        2.04426310338993978564e-15,
    ];
    fn ratio(num: &[f64; 8], den: &[f64; 8], t: f64) -> f64 {
        let horner = |c: &[f64; 8]| c.iter().rev().fold(0.0, |acc, &ck| acc * t + ck);
        horner(num) / horner(den)
    }

    if !(p > 0.0 && p < 1.0) {
        return match p {
            0.0 => f64::NEG_INFINITY,
            1.0 => f64::INFINITY,
            _ => f64::NAN,
        };
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        return q * ratio(&CENTRAL_NUM, &CENTRAL_DEN, 0.180625 - q * q);
    }
    let smaller_tail = if q < 0.0 { p } else { 1.0 - p };
    let t = (-smaller_tail.ln()).sqrt();
    let magnitude = if t <= 5.0 {
        ratio(&NEAR_NUM, &NEAR_DEN, t - 1.6)
    } else {
        ratio(&FAR_NUM, &FAR_DEN, t - 5.0)
    };
    if q < 0.0 {
        -magnitude
    } else {
        magnitude
    }
}

// ---------------------------------------------------------------------------
// Logistic family: compositions of num-dual's exp / ln_1p, arranged so that
// exp only ever sees a non-positive argument (no overflow at |x| = 1000).
// ---------------------------------------------------------------------------

/// ln cosh(x). Near 0 through num-dual's cosh, so every derivative (tanh, sech^2, ...) keeps
/// full relative accuracy for tiny x; for large |x| through |x| + ln(1 + e^-2|x|) - ln 2,
/// which cannot overflow.
pub fn log_cosh<D: DualNum<Primitive = f64> + Copy>(x: D) -> D {
    if x.re().abs() < 20.0 {
        x.cosh().ln()
    } else {
        let magnitude = if x.re() < 0.0 { -x } else { x };
        magnitude + (magnitude * -2.0).exp().ln_1p() - std::f64::consts::LN_2
    }
}

/// Logistic sigmoid 1/(1 + e^-x); exactly 1 at x = 1000, tiny and >= 0 at -1000.
pub fn sigmoid<D: DualNum<Primitive = f64> + Copy>(x: D) -> D {
    if x.re() >= 0.0 {
        ((-x).exp() + 1.0).recip()
    } else {
        let e = x.exp();
        e / (e + 1.0)
    }
}

/// softplus(x) = ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|).
pub fn softplus<D: DualNum<Primitive = f64> + Copy>(x: D) -> D {
    if x.re() > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// ln sigmoid(x) = -softplus(-x).
pub fn log_sigmoid<D: DualNum<Primitive = f64> + Copy>(x: D) -> D {
    -softplus(-x)
}

/// Largest real part, or -inf for an empty slice.
fn max_real_part<D: DualNum<Primitive = f64> + Copy>(xs: &[D]) -> f64 {
    xs.iter().map(|x| x.re()).fold(f64::NEG_INFINITY, f64::max)
}

/// ln sum_i exp(x_i), shifted by the largest real part so nothing overflows.
/// Empty input gives -inf.
pub fn logsumexp<D: DualNum<Primitive = f64> + Copy>(xs: &[D]) -> D {
    let shift = max_real_part(xs);
    if !shift.is_finite() {
        // All -inf (or empty), or some +inf: the shift itself is the answer.
        return D::from(shift);
    }
    let sum: D = xs.iter().map(|&x| (x - shift).exp()).sum();
    sum.ln() + shift
}

/// softmax_i = exp(x_i) / sum_j exp(x_j), with the same shift as [`logsumexp`].
/// Inputs should have finite real parts.
pub fn softmax<D: DualNum<Primitive = f64> + Copy>(xs: &[D]) -> Vec<D> {
    let shift = max_real_part(xs);
    let exps: Vec<D> = xs.iter().map(|&x| (x - shift).exp()).collect();
    let total: D = exps.iter().copied().sum();
    let inverse_total = total.recip();
    exps.into_iter().map(|e| e * inverse_total).collect()
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // reference values quoted with all mpmath digits
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use num_dual::{Dual, Dual2_64, Dual3, Dual3_64, Dual64, HyperDual64};
    use std::f64::consts::LN_2;

    /// Dual number carrying four derivatives (a Dual3 nested in a Dual).
    type Dual4 = Dual<Dual3_64>;

    #[test]
    fn log_cosh_keeps_tiny_slopes_and_large_values() {
        let tiny = log_cosh(Dual64::new(1e-100, 1.0));
        assert_relative_eq!(tiny.eps, 1e-100, max_relative = 1e-12);
        let large = log_cosh(Dual2_64::new(800.0, 1.0, 0.0));
        assert_relative_eq!(large.re, 800.0 - LN_2, max_relative = 1e-15);
        assert_relative_eq!(large.v1, 1.0, max_relative = 1e-15);
        let middle = log_cosh(Dual2_64::new(0.7, 1.0, 0.0));
        assert_relative_eq!(middle.v1, 0.7f64.tanh(), max_relative = 1e-14);
        assert_relative_eq!(middle.v2, 1.0 - 0.7f64.tanh().powi(2), max_relative = 1e-13);
    }

    fn seed_dual4(x: f64) -> Dual4 {
        Dual::new(Dual3::new(x, 1.0, 0.0, 0.0), Dual3::new(1.0, 0.0, 0.0, 0.0))
    }

    /// One scalar function instantiated at every dual type under test.
    struct Case {
        name: &'static str,
        f64: fn(f64) -> f64,
        first: fn(Dual64) -> Dual64,
        second: fn(Dual2_64) -> Dual2_64,
        hyper: fn(HyperDual64) -> HyperDual64,
        third: fn(Dual3_64) -> Dual3_64,
        fourth: fn(Dual4) -> Dual4,
    }

    macro_rules! case {
        ($f:ident) => {
            Case {
                name: stringify!($f),
                f64: $f::<f64>,
                first: $f::<Dual64>,
                second: $f::<Dual2_64>,
                hyper: $f::<HyperDual64>,
                third: $f::<Dual3_64>,
                fourth: $f::<Dual4>,
            }
        };
    }

    fn all_cases() -> Vec<Case> {
        vec![
            case!(erf),
            case!(erfc),
            case!(gaussian_pdf),
            case!(gaussian_cdf),
            case!(gaussian_tail),
            case!(log_gaussian_tail),
            case!(log_gaussian_cdf),
            case!(sigmoid),
            case!(log_sigmoid),
            case!(softplus),
        ]
    }

    /// Derivatives 0..=4 of `case` at x, each from the lowest type that carries it.
    fn derivative_ladder(case: &Case, x: f64) -> [f64; 5] {
        let d1 = (case.first)(Dual64::new(x, 1.0));
        let d2 = (case.second)(Dual2_64::new(x, 1.0, 0.0));
        let d3 = (case.third)(Dual3_64::new(x, 1.0, 0.0, 0.0));
        let d4 = (case.fourth)(seed_dual4(x));
        [(case.f64)(x), d1.eps, d2.v2, d3.v3, d4.eps.v3]
    }

    fn central_difference(f: impl Fn(f64) -> f64, x: f64) -> f64 {
        let h = 1e-5 * x.abs().max(1.0);
        (f(x + h) - f(x - h)) / (2.0 * h)
    }

    const POINTS: [f64; 11] = [-6.0, -3.0, -0.7, -0.2, 0.0, 0.3, 0.66, 0.67, 1.1, 2.5, 6.0];

    #[test]
    fn erf_and_erfc_match_reference_values() {
        let rel = 2e-15;
        assert_relative_eq!(erf(0.5), 0.5204998778130465, max_relative = rel);
        assert_relative_eq!(erf(1.0), 0.8427007929497149, max_relative = rel);
        assert_relative_eq!(erf(0.1), 0.1124629160182848984, max_relative = rel);
        assert_relative_eq!(erf(0.46875), 0.49261347321793799159, max_relative = rel);
        assert_relative_eq!(erf(2.0), 0.99532226501895273416, max_relative = rel);
        assert_relative_eq!(erf(-4.5), -0.99999999980338395585, max_relative = rel);
        assert_relative_eq!(erfc(3.0), 2.209049699858544e-05, max_relative = rel);
        assert_relative_eq!(erfc(10.0), 2.088487583762545e-45, max_relative = rel);
        assert_relative_eq!(erfc(5.0), 1.5374597944280348502e-12, max_relative = rel);
        assert_relative_eq!(erfc(0.3), 0.67137324054087258381, max_relative = rel);
        assert_relative_eq!(erfc(-3.0), 1.9999779095030014146, max_relative = rel);
        // Subnormal range: relative precision is limited by the format itself.
        assert_relative_eq!(erfc(26.6), 1.0885125885442265332e-309, max_relative = 1e-9);
        assert_relative_eq!(erfc(27.0), 5.237048923789255685e-319, max_relative = 1e-3);
        assert_eq!(erfc(30.0), 0.0);
        assert_eq!(erfc(f64::INFINITY), 0.0);
        assert_eq!(erf(f64::NEG_INFINITY), -1.0);
        assert!(erf(f64::NAN).is_nan() && erfc(f64::NAN).is_nan());
    }

    #[test]
    fn gaussian_distribution_matches_reference_values() {
        let rel = 3e-15;
        assert_relative_eq!(
            gaussian_tail(0.5),
            0.30853753872598689636,
            max_relative = rel
        );
        assert_relative_eq!(
            gaussian_tail(2.0),
            0.0227501319481792072,
            max_relative = rel
        );
        assert_relative_eq!(
            gaussian_tail(8.0),
            6.2209605742717841235e-16,
            max_relative = rel
        );
        assert_relative_eq!(
            gaussian_tail(37.0),
            5.7255712225245768227e-300,
            max_relative = rel
        );
        assert_relative_eq!(
            gaussian_tail(-1.0),
            0.84134474606854294859,
            max_relative = rel
        );
        assert_relative_eq!(
            gaussian_cdf(1.0),
            0.84134474606854294859,
            max_relative = rel
        );
        assert_relative_eq!(gaussian_pdf(1.0), 0.24197072451914337, max_relative = rel);
        assert_eq!(gaussian_tail(0.0), 0.5);
    }

    #[test]
    fn log_gaussian_tail_matches_reference_values() {
        let rel = 2e-15;
        let reference = [
            (-5.0, -2.8665161296376359338e-7),
            (-1.0, -0.17275377902344988953),
            (0.0, -LN_2),
            (0.5, -1.1759117615936186089),
            (2.0, -3.7831843336820319488),
            (8.0, -35.013437159914549896),
            (10.0, -53.231285150512470578),
            (12.0, -75.410673001568795939),
            (37.0, -689.0305855768905936),
            (1000.0, -500007.82669481218431),
        ];
        for (x, expected) in reference {
            assert_relative_eq!(log_gaussian_tail(x), expected, max_relative = rel);
        }
    }

    #[test]
    fn log_gaussian_tail_is_finite_at_the_extremes() {
        let x: f64 = 1e3;
        let value = log_gaussian_tail(x);
        assert!(value.is_finite());
        let leading_asymptotics = -x * x / 2.0 - (x * (2.0 * std::f64::consts::PI).sqrt()).ln();
        // The next asymptotic term is -1/x^2 = -1e-6.
        assert!((value - leading_asymptotics).abs() < 2e-6);
        let d = log_gaussian_tail(Dual2_64::new(x, 1.0, 0.0));
        assert!(d.v1.is_finite() && d.v2.is_finite());
        assert_relative_eq!(d.v1, -x - 1.0 / x + 2.0 / x.powi(3), max_relative = 1e-15);

        let far_left = log_gaussian_tail(seed_dual4(-40.0));
        assert!(far_left.re.re <= 0.0 && far_left.re.re > -1e-300);
        assert!(far_left.re.v1.is_finite() && far_left.eps.v3.is_finite());
        assert_eq!(log_gaussian_tail(-1000.0), 0.0);
        assert_eq!(log_gaussian_cdf(-1e3), log_gaussian_tail(1e3));
    }

    #[test]
    fn log_gaussian_tail_derivatives_match_reference_values() {
        // d^n/dx^n ln H at x, n = 1..=4 (mpmath, 40 digits).
        let reference = [
            (
                -3.0,
                [
                    -0.00443783904212566379,
                    -0.0133332115417408062,
                    -0.0356801368765704706,
                    -0.0810462220151818839,
                ],
            ),
            (
                0.7,
                [
                    -1.29049933945816651,
                    -0.762039007521247584,
                    -0.142895026972013793,
                    0.0938857601164873779,
                ],
            ),
            (
                9.99,
                [
                    -10.0881877771438398,
                    -0.990536733247405569,
                    -0.00179138803150829732,
                    0.000499675417527697273,
                ],
            ),
            (
                10.01,
                [
                    -10.1079988694213748,
                    -0.990572461315831773,
                    -0.00178143092790155609,
                    0.000496040374985653779,
                ],
            ),
            (
                30.0,
                [
                    -30.033259667433677,
                    -0.998896228488109909,
                    -0.0000730999301578443847,
                    7.24593721098034208e-6,
                ],
            ),
        ];
        let case = case!(log_gaussian_tail);
        for (x, expected) in reference {
            let ladder = derivative_ladder(&case, x);
            for n in 0..4 {
                assert_relative_eq!(ladder[n + 1], expected[n], max_relative = 1e-12);
            }
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for case in all_cases() {
            let mut points = POINTS.to_vec();
            points.extend([-20.0, 9.0, 15.0]);
            for &x in &points {
                let ladder = derivative_ladder(&case, x);
                let lower_orders = [
                    |c: &Case, t: f64| (c.f64)(t),
                    |c: &Case, t: f64| (c.first)(Dual64::new(t, 1.0)).eps,
                    |c: &Case, t: f64| (c.second)(Dual2_64::new(t, 1.0, 0.0)).v2,
                    |c: &Case, t: f64| (c.third)(Dual3_64::new(t, 1.0, 0.0, 0.0)).v3,
                ];
                for (n, lower) in lower_orders.iter().enumerate() {
                    let fd = central_difference(|t| lower(&case, t), x);
                    let exact = ladder[n + 1];
                    let scale = 1.0 + fd.abs().max(ladder[n].abs());
                    assert!(
                        (exact - fd).abs() <= 1e-6 * scale,
                        "{} order {} at x = {x}: exact {exact}, finite difference {fd}",
                        case.name,
                        n + 1
                    );
                }
                // The value part of every type agrees with the f64 evaluation.
                let hyper = (case.hyper)(HyperDual64::new(x, 1.0, 1.0, 0.0));
                assert_relative_eq!(hyper.re, ladder[0], max_relative = 1e-15);
                assert_relative_eq!(hyper.eps1, ladder[1], max_relative = 1e-15);
                assert_relative_eq!(
                    hyper.eps1eps2,
                    ladder[2],
                    max_relative = 1e-13,
                    epsilon = 1e-300
                );
            }
        }
    }

    #[test]
    fn log_gaussian_tail_is_smooth_across_its_branch_point() {
        let case = case!(log_gaussian_tail);
        for order in [2, 3, 4] {
            let limit = mills_recursion_limit(order);
            let below = derivative_ladder(&case, limit - 1e-9);
            let above = derivative_ladder(&case, limit + 1e-9);
            for n in 0..=order {
                assert_relative_eq!(below[n], above[n], max_relative = 1e-8);
            }
        }
    }

    #[test]
    fn logistic_functions_are_stable_at_large_arguments() {
        assert_eq!(sigmoid(1000.0), 1.0);
        let tiny = sigmoid(-1000.0);
        assert!((0.0..1e-300).contains(&tiny));
        for x in [-1000.0, 1000.0] {
            for d in [
                sigmoid(Dual64::new(x, 1.0)),
                softplus(Dual64::new(x, 1.0)),
                log_sigmoid(Dual64::new(x, 1.0)),
            ] {
                assert!(d.re.is_finite() && d.eps.is_finite());
            }
        }
        assert_eq!(softplus(1000.0), 1000.0);
        assert_eq!(log_sigmoid(-1000.0), -1000.0);
        assert_eq!(softplus(Dual64::new(1000.0, 1.0)).eps, 1.0);
        assert_relative_eq!(softplus(0.0), LN_2, max_relative = 1e-15);
    }

    #[test]
    fn logsumexp_and_softmax_shift_by_the_maximum() {
        let xs = [
            Dual64::new(1000.0, 1.0),
            Dual64::new(1000.0, 0.0),
            Dual64::new(-5.0, 0.0),
        ];
        let lse = logsumexp(&xs);
        assert_relative_eq!(lse.re, 1000.0 + LN_2, max_relative = 1e-15);
        let weights = softmax(&xs);
        // d lse / d x_0 is the first softmax weight.
        assert_relative_eq!(lse.eps, weights[0].re, max_relative = 1e-14);
        let total: f64 = weights.iter().map(|w| w.re).sum();
        assert_relative_eq!(total, 1.0, max_relative = 1e-15);
        assert_eq!(logsumexp::<f64>(&[]), f64::NEG_INFINITY);
        assert_eq!(
            logsumexp(&[f64::NEG_INFINITY, f64::NEG_INFINITY]),
            f64::NEG_INFINITY
        );
        let plain = [0.3_f64, -1.2, 2.0];
        let direct = plain.iter().map(|x| x.exp()).sum::<f64>().ln();
        assert_relative_eq!(logsumexp(&plain), direct, max_relative = 1e-15);
    }

    #[test]
    fn taylor_reproduces_num_dual_exp() {
        for x0 in [-2.0, 0.0, 0.7, 3.0] {
            let derivatives = [x0.exp(); 4];
            let a = Dual64::new(x0, 1.3);
            let (t, e) = (taylor(a, &derivatives), a.exp());
            assert_relative_eq!(t.re, e.re, max_relative = 1e-14);
            assert_relative_eq!(t.eps, e.eps, max_relative = 1e-14);

            let b = Dual2_64::new(x0, 1.3, -0.4);
            let (t, e) = (taylor(b, &derivatives), b.exp());
            for (p, q) in [(t.re, e.re), (t.v1, e.v1), (t.v2, e.v2)] {
                assert_relative_eq!(p, q, max_relative = 1e-14);
            }

            let c = Dual3_64::new(x0, 1.3, -0.4, 0.9);
            let (t, e) = (taylor(c, &derivatives), c.exp());
            for (p, q) in [(t.re, e.re), (t.v1, e.v1), (t.v2, e.v2), (t.v3, e.v3)] {
                assert_relative_eq!(p, q, max_relative = 1e-14);
            }
        }
    }

    #[test]
    #[should_panic(expected = "taylor")]
    fn taylor_rejects_too_few_derivatives() {
        taylor(Dual2_64::new(0.0, 1.0, 0.0), &[1.0, 1.0]);
    }

    #[test]
    fn inverse_normal_cdf_matches_reference_values() {
        let reference = [
            (1e-300, -37.047096299361199237),
            (1e-20, -9.2623400897984075737),
            (1e-10, -6.3613409024040562047),
            (0.02425, -1.9729610513118848503),
            (0.3, -0.52440051270804078404),
            (0.975, 1.9599639845400542355),
            // For the f64 nearest 0.999999 (1 - p is exact, but p itself was rounded).
            (0.999999, 4.7534243088170877657),
        ];
        for (p, expected) in reference {
            assert_relative_eq!(inverse_normal_cdf(p), expected, max_relative = 1e-15);
        }
        assert_eq!(inverse_normal_cdf(0.5), 0.0);
        assert_eq!(inverse_normal_cdf(0.0), f64::NEG_INFINITY);
        assert_eq!(inverse_normal_cdf(1.0), f64::INFINITY);
        assert!(inverse_normal_cdf(1.5).is_nan() && inverse_normal_cdf(f64::NAN).is_nan());
        for k in 1..200 {
            let p = k as f64 / 200.0;
            assert_relative_eq!(gaussian_cdf(inverse_normal_cdf(p)), p, max_relative = 1e-14);
        }
    }
}
