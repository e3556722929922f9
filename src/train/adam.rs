//! Adam (Kingma & Ba 2015, as PyTorch and burn's `Adam`: betas 0.9 / 0.999, eps 1e-8) over all of
//! a model's float parameters at once. The gradient, the moments and the update are flat vectors
//! in the parameters' visit order (`crate::train::flat`), so a step is a dozen element-wise ops in all
//! instead of a dozen per parameter tensor: on a GPU, each op is a kernel launch, and burn's
//! per-tensor `Adam` launched ~3,500 a step for the UNet's 270 tensors (BENCHMARKS.md, "Native
//! GPU"). Each element goes through burn's `Adam`'s ops in its order, so the numbers are the same
//! (burn's skips a parameter without a gradient; here it gets a zero one, which the UNet never has).
//! The state is saved in burn's optimizer-record layout (burnpack, `{param_id}.momentum.moment_1`),
//! so training states written with burn's `Adam` resume here.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;
#[cfg(not(target_family = "wasm"))]
use {
    crate::error::{Error, Result},
    crate::weights::to_vec,
    burn::tensor::{Device, TensorData},
    burn_pack::{Reader, Scalar, Writer},
    std::path::Path,
};

use super::flat::Slices;
#[cfg(not(target_family = "wasm"))]
use super::flat::layout;
use crate::unet::UNet2DModel;

const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

/// The first and second moments of the gradient, after `time` steps.
#[derive(Default)]
pub struct Adam {
    moments: Option<(Tensor<1>, Tensor<1>)>,
    time: usize,
}

impl Adam {
    /// Moves `unet`'s parameters one step along the flat gradient `grad` (on the inner device of
    /// `unet`'s autodiff device) with learning rate `lr`.
    pub fn step(&mut self, lr: f64, unet: UNet2DModel, grad: Tensor<1>) -> UNet2DModel {
        // m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2 (Algorithm 1 of Kingma & Ba)
        let (m, v) = match self.moments.take() {
            Some((m, v)) => (
                m.mul_scalar(BETA_1).add(grad.clone().mul_scalar(1.0 - BETA_1)),
                v.mul_scalar(BETA_2).add(grad.square().mul_scalar(1.0 - BETA_2)),
            ),
            None => (grad.clone().mul_scalar(1.0 - BETA_1), grad.square().mul_scalar(1.0 - BETA_2)),
        };
        self.time += 1;
        // lr m_hat / (sqrt(v_hat) + eps), with the bias corrections folded into two scalars
        let t = self.time as i32;
        let correction_2 = (1.0 - BETA_2.powi(t)).sqrt();
        let factor = correction_2 / (1.0 - BETA_1.powi(t));
        let delta = m
            .clone()
            .mul_scalar(factor)
            .div(v.clone().sqrt().add_scalar(EPSILON * correction_2))
            .mul_scalar(lr);
        self.moments = Some((m, v));
        unet.map(&mut Descend(Slices::new(delta)))
    }

    /// Writes the state to `path` (burnpack, keyed by `unet`'s parameter ids). Reads the moments
    /// back synchronously: native only.
    #[cfg(not(target_family = "wasm"))]
    pub fn save(&self, unet: &UNet2DModel, path: &Path) -> Result<()> {
        let fail = |e: String| Error::io(path.display(), e);
        let mut tensors = vec![];
        let mut scalars = vec![];
        if let Some((m, v)) = &self.moments {
            let (m, v) = (to_vec(m.clone())?, to_vec(v.clone())?);
            let mut at = 0;
            for (id, shape) in layout(unet) {
                let n: usize = shape.iter().product();
                for (name, flat) in [("moment_1", &m), ("moment_2", &v)] {
                    let (bytes, shape, dtype) =
                        TensorData::new(flat[at..at + n].to_vec(), shape.clone()).into_parts();
                    tensors.push(burn_pack::Tensor::new(
                        format!("{id}.momentum.{name}"),
                        dtype,
                        shape,
                        Some(id),
                        bytes,
                    ));
                }
                scalars.push((format!("{id}.momentum.time"), Scalar::from(self.time)));
                scalars.push((format!("{id}.__rank"), Scalar::from(shape.len())));
                at += n;
            }
        }
        let writer = scalars.iter().fold(Writer::new(tensors), |w, (key, value)| w.with_scalar(key, *value));
        writer.auto_extension(false).write_to_file(path).map_err(|e| fail(e.to_string()))
    }

    /// Reads a state that `save` (or burn's `Adam`) wrote for a model with `unet`'s parameter ids
    /// and shapes, onto `device`.
    #[cfg(not(target_family = "wasm"))]
    pub fn load(unet: &UNet2DModel, path: &Path, device: &Device) -> Result<Adam> {
        let fail = |e: String| Error::io(path.display(), e);
        let reader = Reader::from_file(path).map_err(|e| fail(e.to_string()))?;
        let scalars = reader.scalars().clone();
        let mut named = std::collections::HashMap::new();
        for tensor in reader.into_tensors().map_err(|e| fail(e.to_string()))? {
            let (name, dtype, shape, _, bytes) = tensor.into_parts().map_err(|e| fail(e.to_string()))?;
            named.insert(name, TensorData::from_bytes(bytes, shape, dtype));
        }
        if named.is_empty() {
            return Ok(Adam::default());
        }
        let (mut m, mut v, mut time) = (vec![], vec![], None);
        for (id, shape) in layout(unet) {
            for (name, flat) in [("moment_1", &mut m), ("moment_2", &mut v)] {
                let key = format!("{id}.momentum.{name}");
                let data = named
                    .remove(&key)
                    .ok_or_else(|| fail(format!("no tensor {key}: the state is of another model")))?;
                if data.shape().to_vec() != shape {
                    return Err(fail(format!(
                        "{key} has shape {:?}, the model's parameter {:?}",
                        data.shape(),
                        shape
                    )));
                }
                flat.extend(data.try_into_vec::<f32>().map_err(|e| fail(format!("{key}: {e:?}")))?);
            }
            let key = format!("{id}.momentum.time");
            let t = scalars
                .get(&key)
                .and_then(|s| usize::try_from(*s).ok())
                .ok_or_else(|| fail(format!("no step count {key}")))?;
            match time {
                Some(first) if first != t => {
                    return Err(fail(format!("{key} is {t}, other parameters' {first}")));
                }
                _ => time = Some(t),
            }
        }
        if !named.is_empty() {
            return Err(fail(format!("{} tensors for parameters the model does not have", named.len())));
        }
        let n = m.len();
        let flat = |x: Vec<f32>| Tensor::<1>::from_data(TensorData::new(x, [n]), device);
        Ok(Adam { moments: Some((flat(m), flat(v))), time: time.unwrap_or(0) })
    }
}

/// theta <- theta - delta, each parameter taking its slice of the flat `delta`; the parameter
/// keeps its autodiff state (tracked, checkpointing strategy), as burn's optimizers do.
struct Descend(Slices);

impl ModuleMapper for Descend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, value, mapper) = param.consume();
        let delta = self.0.next(value.dims());
        let (tracked, strategy) = (value.is_require_grad(), value.gradient_checkpointing_strategy());
        let mut value = Tensor::from_inner(value.inner() - delta);
        if let Some(strategy) = strategy {
            value = value.with_gradient_checkpointing_strategy(strategy);
        }
        if tracked {
            value = value.require_grad();
        }
        Param::from_mapped_value(id, value, mapper)
    }
}
