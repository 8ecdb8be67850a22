//! Helpers shared by the integration tests: brute-force Jacobians and determinants.
#![allow(dead_code)]

pub use dfdx_flows::testing::log_abs_det;

/// The Jacobian of `f` at `x` by central differences (row-major, outputs × inputs).
pub fn jacobian(f: &dyn Fn(&[f64]) -> Vec<f64>, x: &[f64], step: f64) -> (Vec<f64>, usize) {
    let n_in = x.len();
    let n_out = f(x).len();
    let mut jac = vec![0.0; n_out * n_in];
    for i in 0..n_in {
        let (mut plus, mut minus) = (x.to_vec(), x.to_vec());
        plus[i] += step;
        minus[i] -= step;
        let (fp, fm) = (f(&plus), f(&minus));
        for o in 0..n_out {
            jac[o * n_in + i] = (fp[o] - fm[o]) / (2.0 * step);
        }
    }
    (jac, n_out)
}

/// `log |det ∂f/∂x|` by central differences; `f` must map ℝⁿ to ℝⁿ.
pub fn brute_force_log_det(f: &dyn Fn(&[f64]) -> Vec<f64>, x: &[f64]) -> f64 {
    let (jac, n_out) = jacobian(f, x, 1e-5);
    assert_eq!(n_out, x.len(), "log-det needs a square Jacobian");
    log_abs_det(jac, n_out)
}

/// Asserts `|a − b| ≤ tol · max(1, |b|)`.
pub fn assert_rel_close(a: f64, b: f64, tol: f64, what: &str) {
    let err = (a - b).abs() / b.abs().max(1.0);
    assert!(
        err <= tol,
        "{what}: {a} vs {b} (relative error {err:e} > {tol:e})"
    );
}

/// Largest absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn log_abs_det_of_a_known_matrix() {
    // det [[2, 1], [1, 3]] = 5; det with a row swap needed: [[0, 2], [3, 1]] = −6.
    assert!((log_abs_det(vec![2.0, 1.0, 1.0, 3.0], 2) - 5f64.ln()).abs() < 1e-12);
    assert!((log_abs_det(vec![0.0, 2.0, 3.0, 1.0], 2) - 6f64.ln()).abs() < 1e-12);
}
