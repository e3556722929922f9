// ddpm-web's patch (PATCH.md): PyTorch's own convolution backward for conv2d's weight gradient,
// which tch 0.22 does not bind. Takes and returns tch's tensor handles (at::Tensor*).
#include <ATen/ATen.h>
#include <cstring>

extern "C" at::Tensor *burn_tch_conv2d_weight_backward(
    const at::Tensor *x, const at::Tensor *weight, const at::Tensor *output_grad,
    const int64_t *stride, const int64_t *padding, const int64_t *dilation, int64_t groups,
    char **error) {
  try {
    auto grads = at::convolution_backward(
        *output_grad, *x, *weight, c10::nullopt, at::IntArrayRef(stride, 2),
        at::IntArrayRef(padding, 2), at::IntArrayRef(dilation, 2), false, {0, 0}, groups,
        {false, true, false});
    return new at::Tensor(std::get<1>(grads));
  } catch (const std::exception &e) {
    *error = strdup(e.what());
    return nullptr;
  }
}
