"""The study's CNN in flax linen, with readouts for RSA.

Architecture (study.md §3.1): three blocks conv 3x3 (stride 1, SAME, no bias) -> BatchNorm -> ReLU ->
2x2 max-pool with 32/64/128 channels; adaptive average pool to 4x4; FC 2048->512 -> ReLU -> dropout 0.3 ->
FC 512->10. NHWC layout. The flatten before FC1 uses PyTorch's (C, H, W) order so that weights port from
the reference implementation unchanged.

Readouts (study.md §3.3): `conv1`, `conv2`, `conv3` = spatial mean of each block's output (after the pool),
`fc1` = the 512-d post-ReLU vector. At 32 px the conv3 map is already 4x4 and the adaptive pool is the
identity; at 224 px it averages 7x7 bins, as PyTorch's `AdaptiveAvgPool2d(4)` does.

Convolution implementation (`conv_impl`): "xla" (lax.conv_general_dilated) or "im2col" (9 shifted slices
concatenated along channels, one matmul). Both compute the same function (to float32 rounding); on a
2-core CPU the im2col form is faster under vmap over seeds (see bench/README.md). "auto" picks im2col on CPU
and xla on GPU/TPU.
"""
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

READOUT_LAYERS = ("conv1", "conv2", "conv3", "fc1")
BN_MOMENTUM = 0.9   # flax keeps 0.9 of the old statistic = PyTorch momentum 0.1
BN_EPSILON = 1e-5


def resolve_conv_impl(conv_impl: str) -> str:
  """'auto' -> 'im2col' on the CPU backend, 'xla' elsewhere; other values pass through after validation."""
  if conv_impl == "auto":
    return "im2col" if jax.default_backend() == "cpu" else "xla"
  if conv_impl not in ("xla", "im2col"):
    raise ValueError(f"model.conv_impl must be 'auto', 'xla' or 'im2col', got {conv_impl!r}")
  return conv_impl


def conv3x3(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
  """3x3 convolution, stride 1, zero padding 1.

  Args:
    x: [N, H, W, Cin].
    kernel: [3, 3, Cin, Cout] (HWIO).
    impl: "xla" or "im2col".
  Returns:
    [N, H, W, Cout].
  """
  if impl == "xla":
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
  n, h, w, cin = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  patches = jnp.concatenate([xp[:, u:u + h, v:v + w, :] for u in range(3) for v in range(3)], axis=-1)
  return patches @ kernel.reshape(9 * cin, kernel.shape[-1])     # [N, H, W, 9*Cin] @ [9*Cin, Cout]


def _adaptive_pool_matrix(size: int, out: int) -> np.ndarray:
  """[out, size] averaging weights of PyTorch's adaptive average pooling along one axis."""
  m = np.zeros((out, size), np.float32)
  for i in range(out):
    start, end = (i * size) // out, -((-(i + 1) * size) // out)
    m[i, start:end] = 1.0 / (end - start)
  return m


def adaptive_avg_pool(x: jax.Array, out: int = 4) -> jax.Array:
  """PyTorch AdaptiveAvgPool2d(out) for NHWC input. x: [N, H, W, C] -> [N, out, out, C]."""
  ph = jnp.asarray(_adaptive_pool_matrix(x.shape[1], out))
  pw = jnp.asarray(_adaptive_pool_matrix(x.shape[2], out))
  return jnp.einsum("ih,jw,nhwc->nijc", ph, pw, x)


def torch_default_kernel_init(key, shape, dtype=jnp.float32):
  """PyTorch's default kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in = prod(shape[:-1])."""
  bound = 1.0 / np.sqrt(np.prod(shape[:-1]))
  return jax.random.uniform(key, shape, dtype, -bound, bound)


def kaiming_normal_kernel_init(key, shape, dtype=jnp.float32):
  """PyTorch kaiming_normal_ (fan_in, ReLU gain): N(0, 2 / fan_in)."""
  return jax.random.normal(key, shape, dtype) * np.sqrt(2.0 / np.prod(shape[:-1]))


def torch_default_bias_init(fan_in: int) -> Callable:
  """PyTorch's default linear bias init U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / np.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


KERNEL_INITS = {"torch_default": torch_default_kernel_init, "kaiming_normal": kaiming_normal_kernel_init}


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pool, stride 2, as a reshape + max (its gradient avoids select_and_scatter, slow on CPU).

  x: [N, H, W, C] with even H, W -> [N, H/2, W/2, C]. Ties send the gradient to every maximal element
  (PyTorch picks one); with continuous activations ties have probability zero except all-zero ReLU windows,
  whose gradient is zero either way.
  """
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class Conv3x3(nn.Module):
  """Bias-free (by default) 3x3 convolution with a selectable implementation."""
  features: int
  impl: str = "xla"
  kernel_init: Callable = torch_default_kernel_init
  use_bias: bool = False

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features))
    y = conv3x3(x, kernel, self.impl)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,))
    return y


class CNN(nn.Module):
  """The study's CNN. __call__ returns (logits [N, num_classes], {layer: [N, d]} readouts).

  Attributes:
    conv_widths: channels of the three conv blocks (study: 32, 64, 128).
    fc_width: width of FC1 (study: 512).
    num_classes: 10.
    dropout_rate: between FC1-ReLU and FC2, active only when train=True (study: 0.3).
    conv_impl: "xla" or "im2col" (resolve "auto" with `resolve_conv_impl` first).
    conv_init: "torch_default" (reference BP/Random/PC) or "kaiming_normal" (reference FA/STDP).
    conv_bias: add a zero-initialised conv bias (reference FA).
  """
  conv_widths: Sequence[int] = (32, 64, 128)
  fc_width: int = 512
  num_classes: int = 10
  dropout_rate: float = 0.3
  conv_impl: str = "xla"
  conv_init: str = "torch_default"
  conv_bias: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, bn_batch_stats: bool | None = None):
    """x: [N, H, W, 3] normalised images (H = W divisible by 8).

    train: training mode (BN batch statistics and running-stat updates, dropout on).
    bn_batch_stats: override BN only (dropout stays off when train=False). True normalises with the
      current batch's statistics: the reference implementation's extraction defect for PC/STDP
      (study.md §6.1); callers must pass mutable=["batch_stats"] and discard the update.
    """
    use_batch = train if bn_batch_stats is None else bn_batch_stats
    feats = {}
    h = x
    for i, width in enumerate(self.conv_widths, start=1):
      h = Conv3x3(width, impl=self.conv_impl, kernel_init=KERNEL_INITS[self.conv_init],
                  use_bias=self.conv_bias, name=f"conv{i}")(h)
      h = nn.BatchNorm(use_running_average=not use_batch, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                       name=f"bn{i}")(h)
      h = nn.relu(h)
      h = max_pool_2x2(h)
      feats[f"conv{i}"] = h.mean(axis=(1, 2))                       # [N, C]
    h = adaptive_avg_pool(h, 4)                                      # [N, 4, 4, C]
    h = jnp.transpose(h, (0, 3, 1, 2)).reshape(h.shape[0], -1)       # PyTorch (C, H, W) flatten order
    fan_in = h.shape[-1]
    h = nn.Dense(self.fc_width, kernel_init=torch_default_kernel_init,
                 bias_init=torch_default_bias_init(fan_in), name="fc1")(h)
    h = nn.relu(h)
    feats["fc1"] = h
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    logits = nn.Dense(self.num_classes, kernel_init=torch_default_kernel_init,
                      bias_init=torch_default_bias_init(self.fc_width), name="fc2")(h)
    return logits, feats


def create_model(model_config: Any, *, conv_init: str = "torch_default", conv_bias: bool = False) -> CNN:
  """Builds the CNN from `config.model` (conv_widths, fc_width, num_classes, dropout_rate, conv_impl); the
  rule decides the conv initialisation and bias (the reference rules differ, study.md §3.2)."""
  return CNN(conv_widths=tuple(model_config.conv_widths), fc_width=model_config.fc_width,
             num_classes=model_config.num_classes, dropout_rate=model_config.dropout_rate,
             conv_impl=resolve_conv_impl(model_config.conv_impl), conv_init=conv_init, conv_bias=conv_bias)
