//! Nearest-neighbour distances in pixel space, for `ddpm eval`'s check that samples are not copies
//! of training images: a copy is at distance 0 from its original, while a real image the model
//! never saw sits at some typical distance from its nearest training image.

use burn::tensor::{Device, Tensor};

use crate::error::{Error, Result};
use crate::eval::dataset::Dataset;
use crate::weights::to_vec;

/// Queries compared per matmul ([CHUNK, reference] distances at a time).
const CHUNK: usize = 500;

/// For every image of `queries`, the Euclidean distance to its nearest image in `reference` (both
/// of one shape), from |q - r|^2 = |q|^2 + |r|^2 - 2 q.r: one matmul per chunk of queries.
pub fn nearest_distances(queries: &Dataset, reference: &Dataset, device: &Device) -> Result<Vec<f32>> {
    if queries.shape != reference.shape || reference.is_empty() {
        return Err(Error::Request(format!(
            "nearest distances need images of one shape and a non-empty reference: queries {:?}, reference {} images of {:?}",
            queries.shape,
            reference.len(),
            reference.shape
        )));
    }
    let flat = |data: &Dataset, idx: &[usize]| -> Tensor<2> { data.batch(idx, device).flatten::<2>(1, 3) };
    let r = flat(reference, &(0..reference.len()).collect::<Vec<_>>());
    let r_sq = r.clone().powi_scalar(2).sum_dim(1).transpose(); // [1, m]
    let r_t = r.transpose();
    let mut out = Vec::with_capacity(queries.len());
    for idx in (0..queries.len()).collect::<Vec<_>>().chunks(CHUNK) {
        let q = flat(queries, idx);
        let q_sq = q.clone().powi_scalar(2).sum_dim(1); // [k, 1]
        let d_sq = q_sq + r_sq.clone() - q.matmul(r_t.clone()).mul_scalar(2.0);
        let nearest = d_sq.min_dim(1).clamp_min(0.0).sqrt();
        out.extend(to_vec(nearest)?);
    }
    Ok(out)
}
