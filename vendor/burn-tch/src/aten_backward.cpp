// ddpm-web's patch (PATCH.md): PyTorch's own backward kernels that tch 0.22 does not bind:
// convolution (the weight's gradient) and group norm. Takes and returns tch's tensor handles
// (at::Tensor*); on a libtorch error, returns null and sets `error` (strdup).
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

// The gradients of native_group_norm for x, gamma and beta (written to `out`, undefined where
// `mask` is false), from the mean and 1/std its forward returned.
extern "C" int burn_tch_group_norm_backward(
    const at::Tensor *output_grad, const at::Tensor *x, const at::Tensor *mean,
    const at::Tensor *rstd, const at::Tensor *gamma, int64_t n, int64_t c, int64_t hxw,
    int64_t groups, const bool *mask, at::Tensor **out, char **error) {
  try {
    auto grads = at::native_group_norm_backward(
        *output_grad, *x, *mean, *rstd, *gamma, n, c, hxw, groups, {mask[0], mask[1], mask[2]});
    out[0] = new at::Tensor(std::get<0>(grads));
    out[1] = new at::Tensor(std::get<1>(grads));
    out[2] = new at::Tensor(std::get<2>(grads));
    return 0;
  } catch (const std::exception &e) {
    *error = strdup(e.what());
    return 1;
  }
}
