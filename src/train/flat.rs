//! A model's float parameters as one flat vector, in visit order: their gradients (for Adam over
//! all of them at once, `crate::train::adam`, and for workers that share a batch, the browser's
//! fine-tuning on several CPU workers, to exchange and sum), their values (the EMA), and slices
//! of such a vector back in the parameters' shapes.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::error::{Error, Result};
use crate::unet::UNet2DModel;

/// Each float parameter's id and shape, in visit order.
pub fn layout(unet: &UNet2DModel) -> Vec<(u64, Vec<usize>)> {
    let mut layout = Layout(vec![]);
    unet.visit(&mut layout);
    layout.0
}

struct Layout(Vec<(u64, Vec<usize>)>);

impl ModuleVisitor for Layout {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push((param.id.val(), param.val().dims().to_vec()));
    }
}

/// Each parameter's gradient (zeros where one has none), or with no gradients its value, off
/// autodiff.
struct Gather<'a> {
    grads: Option<&'a GradientsParams>,
    out: Vec<Tensor<1>>,
}

impl ModuleVisitor for Gather<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        let flat = match self.grads {
            Some(grads) => match grads.get::<D>(param.id) {
                Some(g) => g.reshape([n]),
                None => Tensor::zeros([n], &value.device().inner()),
            },
            None => value.reshape([n]).detach().inner(),
        };
        self.out.push(flat);
    }
}

fn gather(unet: &UNet2DModel, grads: Option<&GradientsParams>) -> Tensor<1> {
    let mut gather = Gather { grads, out: vec![] };
    unet.visit(&mut gather);
    Tensor::cat(gather.out, 0)
}

/// The gradients of `unet`'s float parameters as one vector (zeros where one has none).
pub fn gradients(unet: &UNet2DModel, grads: &GradientsParams) -> Tensor<1> {
    gather(unet, Some(grads))
}

/// `unet`'s float parameters as one vector, off autodiff.
pub fn weights(unet: &UNet2DModel) -> Tensor<1> {
    gather(unet, None)
}

/// Consecutive slices of a flat vector, each shaped as the parameter it belongs to: call `next`
/// once per parameter, in visit order.
pub struct Slices {
    flat: Tensor<1>,
    at: usize,
}

impl Slices {
    pub fn new(flat: Tensor<1>) -> Slices {
        Slices { flat, at: 0 }
    }

    pub fn next<const D: usize>(&mut self, dims: [usize; D]) -> Tensor<D> {
        let n = dims.iter().product();
        let slice = self.flat.clone().narrow(0, self.at, n).reshape(dims);
        self.at += n;
        slice
    }
}

/// The sum of flat gradients `parts` (added in their order, so every worker gets the same
/// bits), on `unet`'s (non-autodiff) device, and on the host.
pub fn sum(unet: &UNet2DModel, parts: &[Vec<f32>]) -> Result<(Tensor<1>, Vec<f32>)> {
    let want = unet.num_params();
    if let Some((i, part)) = parts.iter().enumerate().find(|(_, p)| p.len() != want) {
        return Err(Error::Request(format!(
            "gradient part {i} has {} values, the model {want} parameters",
            part.len()
        )));
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
