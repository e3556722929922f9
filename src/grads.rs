//! Gradients as one flat vector of the float parameters, in visit order: how workers that
//! share a batch (the browser's fine-tuning on several CPU workers) exchange and sum them.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::error::{Error, Result};
use crate::unet::UNet2DModel;

struct Gather<'a> {
    grads: &'a GradientsParams,
    out: Vec<Tensor<1>>,
}

impl ModuleVisitor for Gather<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        let grad = match self.grads.get::<D>(param.id) {
            Some(g) => g.reshape([n]),
            None => Tensor::zeros([n], &value.device().inner()),
        };
        self.out.push(grad);
    }
}

/// The gradients of `unet`'s float parameters as one vector (zeros where one has none).
pub fn flatten(unet: &UNet2DModel, grads: &GradientsParams) -> Tensor<1> {
    let mut gather = Gather { grads, out: vec![] };
    unet.visit(&mut gather);
    Tensor::cat(gather.out, 0)
}

/// The sum of flat gradients `parts` (added in their order, so every worker gets the same
/// bits), on `unet`'s (non-autodiff) device, and on the host.
pub fn sum(unet: &UNet2DModel, parts: &[Vec<f32>]) -> Result<(Tensor<1>, Vec<f32>)> {
    let want = unet.num_params();
    if let Some((i, part)) = parts.iter().enumerate().find(|(_, p)| p.len() != want) {
        return Err(Error::Request(format!("gradient part {i} has {} values, the model {want} parameters", part.len())));
    }
    let Some((first, rest)) = parts.split_first() else {
        return Err(Error::Request("no gradients to sum".into()));
    };
    let mut total = first.clone();
    for part in rest {
        total.iter_mut().zip(part).for_each(|(t, g)| *t += g);
    }
    let flat = Tensor::from_data(TensorData::new(total.clone(), [want]), &unet.device().inner());
    Ok((flat, total))
}
