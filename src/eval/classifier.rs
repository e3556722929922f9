//! A small MNIST classifier (three 3x3 conv layers with max-pooling, two linear layers), trained
//! by `ddpm classifier` and shipped under `models/mnist-classifier/`. `ddpm eval` compares image
//! sets by its 128-d penultimate features (a Fréchet distance for digits) and by its predictions.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::unet::resnet::conv3x3;

/// Size of the feature vector FID is computed on.
pub const FEATURES: usize = 128;
pub const CLASSES: usize = 10;

#[derive(Module, Debug)]
pub struct Classifier {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub conv3: Conv2d,
    pub fc1: Linear,
    pub fc2: Linear,
    pool: MaxPool2d,
}

impl Classifier {
    /// For 1x32x32 images in [-1, 1].
    pub fn new(device: &Device) -> Self {
        Classifier {
            conv1: conv3x3(1, 32, device),
            conv2: conv3x3(32, 64, device),
            conv3: conv3x3(64, 128, device),
            fc1: LinearConfig::new(128 * 4 * 4, FEATURES).init(device),
            fc2: LinearConfig::new(FEATURES, CLASSES).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        }
    }

    /// The penultimate activations, [N, FEATURES].
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(x)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        let x = self.pool.forward(relu(self.conv3.forward(x)));
        relu(self.fc1.forward(x.flatten(1, 3)))
    }

    /// Class logits, [N, CLASSES], from `features`.
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(features)
    }
}
