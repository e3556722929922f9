//! Fréchet distance between two sets of feature vectors (Heusel et al. 2017, eq. 6):
//! |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), with S the sample covariances (n - 1).

use nalgebra::{DMatrix, DVector};

fn mean_cov(x: &[f32], dim: usize) -> (DVector<f64>, DMatrix<f64>) {
    let n = x.len() / dim;
    let m = DMatrix::from_row_iterator(n, dim, x.iter().map(|v| *v as f64));
    let mu = m.row_mean().transpose();
    let centred = DMatrix::from_fn(n, dim, |i, j| m[(i, j)] - mu[j]);
    let cov = centred.transpose() * &centred / (n as f64 - 1.0);
    (mu, cov)
}

/// Symmetric positive semi-definite square root (negative eigenvalues from rounding set to 0).
fn sqrt_psd(m: DMatrix<f64>) -> DMatrix<f64> {
    let eig = m.symmetric_eigen();
    let s = eig.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&s) * eig.eigenvectors.transpose()
}

/// FID of two sets of `dim`-d features, each a row-major [n, dim] slice (n >= 2 each).
pub fn frechet_distance(a: &[f32], b: &[f32], dim: usize) -> f64 {
    assert!(
        a.len().is_multiple_of(dim)
            && b.len().is_multiple_of(dim)
            && a.len() >= 2 * dim
            && b.len() >= 2 * dim,
        "two sets of at least 2 feature vectors"
    );
    let (mu_a, cov_a) = mean_cov(a, dim);
    let (mu_b, cov_b) = mean_cov(b, dim);
    let root_a = sqrt_psd(cov_a.clone());
    // tr((S_a S_b)^(1/2)) = tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)), a symmetric PSD product.
    let inner = &root_a * &cov_b * &root_a;
    let inner = (&inner + inner.transpose()) / 2.0;
    let tr_sqrt: f64 = inner.symmetric_eigenvalues().iter().map(|l| l.max(0.0).sqrt()).sum();
    (mu_a - mu_b).norm_squared() + cov_a.trace() + cov_b.trace() - 2.0 * tr_sqrt
}
