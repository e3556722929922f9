//! What `ddpm eval` measures samples with: our MNIST classifier's features, the dataset, the
//! Fréchet distance between feature sets, and nearest training images (memorisation).

pub mod classifier;
pub mod dataset;
pub mod fid;
pub mod nearest;
