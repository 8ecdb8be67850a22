//! Small dense linear algebra in `f64` on the host, for [`InvConv1x1`](super::InvConv1x1):
//! a random rotation, its LU factors packed into one matrix, and the inverse from the factors.
//! Matrices are `n`×`n`, row-major.

/// The columns of `a` made orthonormal (modified Gram–Schmidt): the `Q` of `a = Q·R`. A column
/// that is (numerically) dependent on the earlier ones is replaced by a unit vector first.
pub(crate) fn orthonormalize(a: &[f64], n: usize) -> Vec<f64> {
    let mut q = a.to_vec();
    for j in 0..n {
        for k in 0..j {
            let dot: f64 = (0..n).map(|i| q[i * n + j] * q[i * n + k]).sum();
            for i in 0..n {
                q[i * n + j] -= dot * q[i * n + k];
            }
        }
        let mut norm = (0..n).map(|i| q[i * n + j].powi(2)).sum::<f64>().sqrt();
        if norm < 1e-8 {
            // Start over from the unit vector least covered by the earlier columns.
            let e = (0..n)
                .min_by(|&a, &b| {
                    let cover = |r: usize| (0..j).map(|k| q[r * n + k].powi(2)).sum::<f64>();
                    cover(a).total_cmp(&cover(b))
                })
                .unwrap_or(0);
            for i in 0..n {
                q[i * n + j] = if i == e { 1.0 } else { 0.0 };
            }
            for k in 0..j {
                let dot = q[e * n + k];
                for i in 0..n {
                    q[i * n + j] -= dot * q[i * n + k];
                }
            }
            norm = (0..n).map(|i| q[i * n + j].powi(2)).sum::<f64>().sqrt();
        }
        for i in 0..n {
            q[i * n + j] /= norm;
        }
    }
    q
}

/// The packed factors of a rotation close to `q`: with partial pivoting `P·q = L·U`, and `S` the
/// signs of `U`'s diagonal, `P·q·S = L·(U·S)` is a rotation whose factors have a positive
/// diagonal. Returns `L` strictly below the diagonal, `log |U_jj|` on it, `(U·S)` above it.
pub(crate) fn rotation_lu(q: &[f64], n: usize) -> Vec<f64> {
    let mut a = q.to_vec();
    for k in 0..n {
        let pivot = (k..n)
            .max_by(|&i, &j| a[i * n + k].abs().total_cmp(&a[j * n + k].abs()))
            .unwrap_or(k);
        if pivot != k {
            for j in 0..n {
                a.swap(k * n + j, pivot * n + j);
            }
        }
        for i in k + 1..n {
            let factor = a[i * n + k] / a[k * n + k];
            a[i * n + k] = factor;
            for j in k + 1..n {
                a[i * n + j] -= factor * a[k * n + j];
            }
        }
    }
    // `a` now holds L below the diagonal and U on and above it.
    let mut packed = a.clone();
    for j in 0..n {
        let sign = a[j * n + j].signum();
        packed[j * n + j] = a[j * n + j].abs().ln();
        for i in 0..j {
            packed[i * n + j] = a[i * n + j] * sign;
        }
    }
    packed
}

/// `W = L·U` from the packed factors (`L` strictly below the diagonal with a unit diagonal,
/// `log s` on the diagonal, `U` strictly above with the diagonal `s`).
pub(crate) fn matrix_from_packed(packed: &[f64], n: usize) -> Vec<f64> {
    let l = |i: usize, k: usize| match i.cmp(&k) {
        std::cmp::Ordering::Greater => packed[i * n + k],
        std::cmp::Ordering::Equal => 1.0,
        std::cmp::Ordering::Less => 0.0,
    };
    let u = |k: usize, j: usize| match k.cmp(&j) {
        std::cmp::Ordering::Less => packed[k * n + j],
        std::cmp::Ordering::Equal => packed[k * n + k].exp(),
        std::cmp::Ordering::Greater => 0.0,
    };
    (0..n * n)
        .map(|ij| {
            let (i, j) = (ij / n, ij % n);
            (0..n).map(|k| l(i, k) * u(k, j)).sum()
        })
        .collect()
}

/// `W⁻¹ = U⁻¹·L⁻¹` for the packed factors of [`matrix_from_packed`]: each column of the identity
/// solved forward through `L` and back through `U`.
pub(crate) fn inverse_from_packed(packed: &[f64], n: usize) -> Vec<f64> {
    let mut inverse = vec![0.0; n * n];
    for col in 0..n {
        // L·y = e_col (unit diagonal).
        let mut y = vec![0.0; n];
        for i in 0..n {
            let e = if i == col { 1.0 } else { 0.0 };
            y[i] = e - (0..i).map(|k| packed[i * n + k] * y[k]).sum::<f64>();
        }
        // U·x = y, U's diagonal e^{log s}.
        let mut x = vec![0.0; n];
        for i in (0..n).rev() {
            let rest: f64 = (i + 1..n).map(|k| packed[i * n + k] * x[k]).sum();
            x[i] = (y[i] - rest) / packed[i * n + i].exp();
        }
        for i in 0..n {
            inverse[i * n + col] = x[i];
        }
    }
    inverse
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        (0..n * n)
            .map(|ij| (0..n).map(|k| a[ij / n * n + k] * b[k * n + ij % n]).sum())
            .collect()
    }

    fn distance_to_identity(a: &[f64], n: usize) -> f64 {
        a.iter()
            .enumerate()
            .map(|(ij, v)| (v - if ij / n == ij % n { 1.0 } else { 0.0 }).abs())
            .fold(0.0, f64::max)
    }

    fn transpose(a: &[f64], n: usize) -> Vec<f64> {
        (0..n * n).map(|ij| a[ij % n * n + ij / n]).collect()
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<f64> {
        (0..n * n)
            .map(|i| {
                let x = (i as u64 + 1).wrapping_mul(6364136223846793005) ^ seed;
                (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn packed_factors_of_a_rotation_give_a_rotation_and_its_exact_inverse() {
        for n in [1, 2, 5, 12] {
            let q = orthonormalize(&pseudo_random(n, 7), n);
            assert!(distance_to_identity(&product(&transpose(&q, n), &q, n), n) < 1e-12);
            let packed = rotation_lu(&q, n);
            let w = matrix_from_packed(&packed, n);
            // P·Q·S is orthogonal, with determinant Π s = e^{Σ log s} = ±1 → Σ log s = 0.
            assert!(distance_to_identity(&product(&transpose(&w, n), &w, n), n) < 1e-12);
            let log_det: f64 = (0..n).map(|i| packed[i * n + i]).sum();
            assert!(log_det.abs() < 1e-12, "n = {n}: {log_det}");
            let inverse = inverse_from_packed(&packed, n);
            assert!(distance_to_identity(&product(&w, &inverse, n), n) < 1e-12);
        }
    }

    #[test]
    fn dependent_columns_still_give_a_rotation() {
        let n = 3;
        let a = [1.0, 1.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0];
        let q = orthonormalize(&a, n);
        assert!(distance_to_identity(&product(&transpose(&q, n), &q, n), n) < 1e-12);
    }
}
