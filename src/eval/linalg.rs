//! Small dense matrix functions generic over num-dual number types (k is a handful).
//! nalgebra's decompositions need `ComplexField`, which num-dual provides only for
//! non-nested duals; the implicit-function step of an inner minimisation evaluates in nested
//! duals, so these few routines are written once here for every number type. Plain f64
//! linear solves elsewhere use nalgebra.

use num_dual::DualNum;

/// Row-major square matrix helpers.
fn at<D: Copy>(m: &[D], n: usize, i: usize, j: usize) -> D {
    m[i * n + j]
}

/// Lower Cholesky factor of a symmetric positive-definite matrix; `None` if not positive definite.
pub fn cholesky<D: DualNum<Primitive = f64> + Copy>(m: &[D], n: usize) -> Option<Vec<D>> {
    let mut l = vec![D::from(0.0); n * n];
    for j in 0..n {
        let mut diagonal = at(m, n, j, j);
        for k in 0..j {
            diagonal -= l[j * n + k] * l[j * n + k];
        }
        if diagonal.re() <= 0.0 || !diagonal.re().is_finite() {
            return None;
        }
        let pivot = diagonal.sqrt();
        l[j * n + j] = pivot;
        for i in j + 1..n {
            let mut value = at(m, n, i, j);
            for k in 0..j {
                value -= l[i * n + k] * l[j * n + k];
            }
            l[i * n + j] = value / pivot;
        }
    }
    Some(l)
}

/// LU with partial pivoting (by real part). Returns (lu, permutation, sign) or `None` if singular.
fn lu<D: DualNum<Primitive = f64> + Copy>(m: &[D], n: usize) -> Option<(Vec<D>, Vec<usize>, f64)> {
    let mut a = m.to_vec();
    let mut perm: Vec<usize> = (0..n).collect();
    let mut sign = 1.0;
    for k in 0..n {
        let pivot_row = (k..n).max_by(|&x, &y| a[x * n + k].re().abs().total_cmp(&a[y * n + k].re().abs()))?;
        if a[pivot_row * n + k].re() == 0.0 {
            return None;
        }
        if pivot_row != k {
            for j in 0..n {
                a.swap(k * n + j, pivot_row * n + j);
            }
            perm.swap(k, pivot_row);
            sign = -sign;
        }
        let pivot = a[k * n + k];
        for i in k + 1..n {
            let factor = a[i * n + k] / pivot;
            a[i * n + k] = factor;
            for j in k + 1..n {
                let update = factor * a[k * n + j];
                a[i * n + j] -= update;
            }
        }
    }
    Some((a, perm, sign))
}

pub fn inverse<D: DualNum<Primitive = f64> + Copy>(m: &[D], n: usize) -> Option<Vec<D>> {
    let (a, perm, _) = lu(m, n)?;
    let mut inverse = vec![D::from(0.0); n * n];
    for column in 0..n {
        // Solve L U x = P e_column.
        let mut x: Vec<D> = (0..n).map(|i| D::from(if perm[i] == column { 1.0 } else { 0.0 })).collect();
        for i in 0..n {
            for k in 0..i {
                let update = a[i * n + k] * x[k];
                x[i] -= update;
            }
        }
        for i in (0..n).rev() {
            for k in i + 1..n {
                let update = a[i * n + k] * x[k];
                x[i] -= update;
            }
            x[i] /= a[i * n + i];
        }
        for i in 0..n {
            inverse[i * n + column] = x[i];
        }
    }
    Some(inverse)
}

pub fn determinant<D: DualNum<Primitive = f64> + Copy>(m: &[D], n: usize) -> D {
    match lu(m, n) {
        None => D::from(0.0),
        Some((a, _, sign)) => (0..n).fold(D::from(sign), |acc, i| acc * a[i * n + i]),
    }
}

/// log |det| (for covariance matrices, log det).
pub fn log_determinant<D: DualNum<Primitive = f64> + Copy>(m: &[D], n: usize) -> Option<D> {
    let (a, _, _) = lu(m, n)?;
    Some((0..n).fold(D::from(0.0), |acc, i| acc + a[i * n + i].abs().ln()))
}

/// Principal square root of a symmetric positive-definite matrix by the Denman-Beavers
/// iteration; every iterate is a rational function of the input, so derivatives converge
/// together with the values.
pub fn sqrt_symmetric<D: DualNum<Primitive = f64> + Copy>(m: &[D], n: usize) -> Option<Vec<D>> {
    let mut y = m.to_vec();
    let mut z: Vec<D> = (0..n * n).map(|k| D::from(if k % (n + 1) == 0 { 1.0 } else { 0.0 })).collect();
    for _ in 0..60 {
        let y_inverse = inverse(&y, n)?;
        let z_inverse = inverse(&z, n)?;
        let next_y: Vec<D> = y.iter().zip(&z_inverse).map(|(&a, &b)| (a + b) * 0.5).collect();
        let next_z: Vec<D> = z.iter().zip(&y_inverse).map(|(&a, &b)| (a + b) * 0.5).collect();
        let change: f64 = next_y.iter().zip(&y).map(|(a, b)| (a.re() - b.re()).abs()).sum();
        let scale: f64 = next_y.iter().map(|a| a.re().abs()).sum::<f64>().max(1e-300);
        y = next_y;
        z = next_z;
        if change <= 1e-15 * scale {
            // Two more sweeps so the derivative parts settle as well.
            for _ in 0..2 {
                let y_inverse = inverse(&y, n)?;
                let z_inverse = inverse(&z, n)?;
                let ny: Vec<D> = y.iter().zip(&z_inverse).map(|(&a, &b)| (a + b) * 0.5).collect();
                let nz: Vec<D> = z.iter().zip(&y_inverse).map(|(&a, &b)| (a + b) * 0.5).collect();
                y = ny;
                z = nz;
            }
            return Some(y);
        }
    }
    None
}

/// Eigenvalues of a symmetric matrix (lower triangle read), ascending. Each is the Rayleigh
/// quotient `v' M v` at the unit eigenvector `v` of the real part, so its first derivative is
/// exact where the eigenvalue is simple (Hellmann-Feynman); second derivatives are not.
pub fn eigenvalues_symmetric<D: DualNum<Primitive = f64> + Copy>(m: &[D], n: usize) -> Vec<D> {
    let real = nalgebra::DMatrix::from_fn(n, n, |i, j| if i >= j { m[i * n + j].re() } else { m[j * n + i].re() });
    let eigen = real.symmetric_eigen();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[a].total_cmp(&eigen.eigenvalues[b]));
    order
        .into_iter()
        .map(|k| {
            let v = eigen.eigenvectors.column(k);
            let mut value = D::from(0.0);
            for i in 0..n {
                for j in 0..n {
                    let entry = if i >= j { m[i * n + j] } else { m[j * n + i] };
                    value += entry * (v[i] * v[j]);
                }
            }
            value
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_dual::Dual64;

    #[test]
    fn eigenvalues_are_ascending_with_exact_first_derivatives() {
        // [[2 + t, 1], [1, 2]] at t = 0: eigenvalues 1 and 3.
        let m = [Dual64::new(2.0, 1.0), Dual64::new(1.0, 0.0), Dual64::new(1.0, 0.0), Dual64::new(2.0, 0.0)];
        let values = eigenvalues_symmetric(&m, 2);
        assert!((values[0].re - 1.0).abs() < 1e-14 && (values[1].re - 3.0).abs() < 1e-14);
        // d lambda = v' dM v with v = (1, -1)/sqrt 2 and (1, 1)/sqrt 2: both 1/2.
        assert!((values[0].eps - 0.5).abs() < 1e-14 && (values[1].eps - 0.5).abs() < 1e-14);
    }

    #[test]
    fn inverse_times_matrix_is_identity() {
        let m = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let inv = inverse(&m, 3).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let value: f64 = (0..3).map(|k| m[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!((value - if i == j { 1.0 } else { 0.0 }).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn cholesky_and_sqrt_reproduce_the_matrix() {
        let m = [4.0, 1.0, 1.0, 3.0];
        let l = cholesky(&m, 2).unwrap();
        let s = sqrt_symmetric(&m, 2).unwrap();
        for i in 0..2 {
            for j in 0..2 {
                let llt: f64 = (0..2).map(|k| l[i * 2 + k] * l[j * 2 + k]).sum();
                let ss: f64 = (0..2).map(|k| s[i * 2 + k] * s[k * 2 + j]).sum();
                assert!((llt - m[i * 2 + j]).abs() < 1e-13);
                assert!((ss - m[i * 2 + j]).abs() < 1e-13);
            }
        }
    }

    #[test]
    fn log_determinant_derivative_is_trace_of_inverse_times_direction() {
        // d/dt log det(A + t B) = tr(A^-1 B)
        let a = [2.0, 0.3, 0.3, 1.0];
        let b = [1.0, 0.5, 0.5, -1.0];
        let m: Vec<Dual64> = a.iter().zip(&b).map(|(&x, &y)| Dual64::new(x, y)).collect();
        let value = log_determinant(&m, 2).unwrap();
        let inv = inverse(&a, 2).unwrap();
        let expected: f64 = (0..2).map(|i| (0..2).map(|k| inv[i * 2 + k] * b[k * 2 + i]).sum::<f64>()).sum();
        assert!((value.eps - expected).abs() < 1e-13);
        assert!((value.re - (2.0 - 0.09f64).ln()).abs() < 1e-14);
    }
}
