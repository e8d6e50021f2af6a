"""The study's CNN in flax linen, with readouts for RSA.

Architecture (docs/methods.md §3.1): three blocks conv 3x3 (stride 1, SAME, no bias) -> BatchNorm -> ReLU ->
2x2 max-pool with 32/64/128 channels; adaptive average pool to 4x4; FC 2048->512 -> ReLU -> dropout 0.3 ->
FC 512->10. NHWC layout. The flatten before FC1 uses PyTorch's (C, H, W) order so that weights port from
the reference implementation unchanged.

Readouts (docs/methods.md §3.3): `conv1`, `conv2`, `conv3` = spatial mean of each block's output (after the pool),
`fc1` = the 512-d post-ReLU vector. At 32 px the conv3 map is already 4x4 and the adaptive pool is the
identity; at 224 px it averages 7x7 bins, as PyTorch's `AdaptiveAvgPool2d(4)` does.

Rule-specific variants (all off by default, so the BP/random network is unchanged):
  * `feedback`: an optional {layer: B} dict passed to `CNN.__call__`; a layer listed there sends the error
    down through the fixed kernel B instead of its own weights (feedback alignment, `fa_conv3x3`/`fa_dense`,
    both `jax.custom_vjp`); the weight gradient stays the exact local one.
  * `pre_bn_relu`: the reference STDP block order conv -> ReLU -> BN -> ReLU -> pool (docs/methods.md §3.1).
  * `conv_block` / `batch_norm` / `readout_head`: the same blocks as plain functions of the parameter dicts,
    for rules that run the layers one by one (predictive coding's inference loop, STDP's per-layer update).

Convolution implementation (`conv_impl`): "xla" (lax.conv_general_dilated) or "im2col" (9 shifted slices
concatenated along channels, one matmul). Both compute the same function (to float32 rounding); on a
2-core CPU the XLA convolution is faster for one seed and im2col under vmap over seeds (see bench/README.md).
"auto" picks im2col only on the CPU when a compiled step vmaps several seeds (`resolve_conv_impl`).
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

READOUT_LAYERS = ("conv1", "conv2", "conv3", "fc1")
BN_MOMENTUM = 0.9  # flax keeps 0.9 of the old statistic = PyTorch momentum 0.1
BN_EPSILON = 1e-5


def resolve_conv_impl(conv_impl: str, seeds_per_call: int = 1) -> str:
  """'auto' -> 'xla', except 'im2col' on the CPU backend when one compiled step vmaps several seeds
  (`train.seeds_per_call`): vmapped over per-seed kernels the XLA convolution becomes a grouped convolution,
  slow on XLA:CPU. Other values pass through after validation."""
  if conv_impl == "auto":
    return "im2col" if jax.default_backend() == "cpu" and seeds_per_call > 1 else "xla"
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
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  n, h, w, cin = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  patches = jnp.concatenate([xp[:, u : u + h, v : v + w, :] for u in range(3) for v in range(3)], axis=-1)
  return patches @ kernel.reshape(9 * cin, kernel.shape[-1])  # [N, H, W, 9*Cin] @ [9*Cin, Cout]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def fa_conv3x3(x: jax.Array, kernel: jax.Array, feedback: jax.Array, impl: str) -> jax.Array:
  """Feedback-alignment 3x3 conv. Forward: conv3x3(x, kernel). Backward: the exact dL/dkernel, and dL/dx sent
  down through the fixed `feedback` kernel (same shape as `kernel`) instead of `kernel`; B gets no gradient."""
  return conv3x3(x, kernel, impl)


def _fa_conv_fwd(x, kernel, feedback, impl):
  return conv3x3(x, kernel, impl), (x, kernel, feedback)


def _fa_conv_bwd(impl, residuals, g):
  x, kernel, feedback = residuals
  _, pull_w = jax.vjp(lambda k: conv3x3(x, k, impl), kernel)  # exact local weight gradient
  _, pull_x = jax.vjp(lambda x_: conv3x3(x_, feedback, impl), x)  # B in place of W on the way down
  (dw,), (dx,) = pull_w(g), pull_x(g)
  return dx, dw, jnp.zeros_like(feedback)


fa_conv3x3.defvjp(_fa_conv_fwd, _fa_conv_bwd)


@jax.custom_vjp
def fa_dense(x: jax.Array, kernel: jax.Array, feedback: jax.Array) -> jax.Array:
  """Feedback-alignment dense layer without bias. x: [N, I], kernel/feedback: [I, O] -> [N, O].
  Backward: dL/dkernel = xᵀ g (exact), dL/dx = g Bᵀ (B replaces W)."""
  return x @ kernel


def _fa_dense_fwd(x, kernel, feedback):
  return x @ kernel, (x, feedback)


def _fa_dense_bwd(residuals, g):
  x, feedback = residuals
  return g @ feedback.T, x.T @ g, jnp.zeros_like(feedback)


fa_dense.defvjp(_fa_dense_fwd, _fa_dense_bwd)


def _fa_dot_general(feedback: jax.Array) -> Callable:
  """A `dot_general` for nn.Dense that routes its backward through `feedback` (2-D inputs only)."""

  def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    del precision, preferred_element_type
    if dimension_numbers != (((1,), (0,)), ((), ())):
      raise ValueError(f"feedback alignment supports 2-D dense inputs only, got {dimension_numbers}")
    return fa_dense(lhs, rhs, feedback)

  return dot_general


@jax.custom_vjp
def inject_error(h: jax.Array, signal: jax.Array) -> jax.Array:
  """Identity forward; backward returns `signal` (broadcast to h's shape) as dL/dh, whatever arrives from above
  (direct feedback alignment). h: [N, ..., C]; signal: [N, C] or h's shape."""
  return h


def _inject_fwd(h, signal):
  return h, (h.shape, signal)


def _inject_bwd(residuals, g):
  shape, signal = residuals
  del g
  spread = signal
  if signal.ndim < len(shape):
    spread = signal.reshape(signal.shape[:1] + (1,) * (len(shape) - signal.ndim) + signal.shape[1:])
  return jnp.broadcast_to(spread, shape).astype(jnp.float32), jnp.zeros_like(signal)


inject_error.defvjp(_inject_fwd, _inject_bwd)


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

  x: [N, H, W, C] with even H, W -> [N, H/2, W/2, C]. Ties split the gradient equally among the maximal
  elements (PyTorch sends it to one); with continuous activations ties have probability zero except all-zero
  ReLU windows, whose gradient is zero either way.
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
  def __call__(self, x, feedback: jax.Array | None = None):
    """feedback: optional fixed [3, 3, Cin, Cout] kernel that carries the error down (feedback alignment)."""
    kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features))
    y = conv3x3(x, kernel, self.impl) if feedback is None else fa_conv3x3(x, kernel, feedback, self.impl)
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
    pre_bn_relu: block order conv -> ReLU -> BN -> ReLU -> pool (the reference STDP network).
  """

  conv_widths: Sequence[int] = (32, 64, 128)
  fc_width: int = 512
  num_classes: int = 10
  dropout_rate: float = 0.3
  conv_impl: str = "xla"
  conv_init: str = "torch_default"
  conv_bias: bool = False
  pre_bn_relu: bool = False

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    *,
    train: bool,
    bn_batch_stats: bool | None = None,
    feedback: Mapping[str, jax.Array] | None = None,
    error_signals: Mapping[str, jax.Array] | None = None,
  ):
    """x: [N, H, W, 3] normalised images (H = W divisible by 8).

    train: training mode (BN batch statistics and running-stat updates, dropout on).
    bn_batch_stats: override BN only (dropout stays off when train=False). True normalises with the
      current batch's statistics: the reference implementation's extraction defect for PC/STDP
      (docs/methods.md §6.1); callers must pass mutable=["batch_stats"] and discard the update.
    feedback: optional {layer: B} (layers conv1..conv3, fc1, fc2) of fixed feedback kernels shaped like the
      layer's kernel: those layers send the error down through B (feedback alignment); None = exact BP.
    error_signals: optional {layer: signal} (conv1..conv3 block outputs [N, C] or [N, H, W, C], fc1 [N, F]):
      in the backward pass the gradient reaching that layer's output is REPLACED by the signal (broadcast over
      space), and nothing flows further down from above it (direct feedback alignment).
    """
    use_batch = train if bn_batch_stats is None else bn_batch_stats
    feedback = feedback or {}
    error_signals = error_signals or {}
    feats = {}
    h = x
    for i, width in enumerate(self.conv_widths, start=1):
      h = Conv3x3(
        width, impl=self.conv_impl, kernel_init=KERNEL_INITS[self.conv_init], use_bias=self.conv_bias, name=f"conv{i}"
      )(h, feedback.get(f"conv{i}"))
      if self.pre_bn_relu:
        h = nn.relu(h)
      h = nn.BatchNorm(use_running_average=not use_batch, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"bn{i}")(h)
      h = nn.relu(h)
      h = max_pool_2x2(h)
      if f"conv{i}" in error_signals:
        h = inject_error(h, error_signals[f"conv{i}"])
      feats[f"conv{i}"] = h.mean(axis=(1, 2))  # [N, C]
    h = adaptive_avg_pool(h, 4)  # [N, 4, 4, C]
    h = jnp.transpose(h, (0, 3, 1, 2)).reshape(h.shape[0], -1)  # PyTorch (C, H, W) flatten order
    h = nn.relu(_torch_dense(self.fc_width, h.shape[-1], "fc1", feedback)(h))
    if "fc1" in error_signals:
      h = inject_error(h, error_signals["fc1"])
    feats["fc1"] = h
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    logits = _torch_dense(self.num_classes, self.fc_width, "fc2", feedback)(h)
    return logits, feats


def _torch_dense(features: int, fan_in: int, name: str, feedback: Mapping) -> nn.Dense:
  """A Dense layer with PyTorch's default init; its error goes down through feedback[name] when given (FA)."""
  return nn.Dense(
    features,
    kernel_init=torch_default_kernel_init,
    bias_init=torch_default_bias_init(fan_in),
    name=name,
    dot_general=_fa_dot_general(feedback[name]) if name in feedback else None,
  )


def create_model(
  model_config: Any,
  *,
  conv_init: str = "torch_default",
  conv_bias: bool = False,
  pre_bn_relu: bool = False,
  seeds_per_call: int = 1,
) -> CNN:
  """Builds the CNN from `config.model` (conv_widths, fc_width, num_classes, dropout_rate, conv_impl); the
  rule decides the conv initialisation, bias and (STDP) block order (the reference rules differ,
  docs/methods.md §3.1-3.2). seeds_per_call: seeds one compiled train step vmaps (resolves conv_impl 'auto')."""
  return CNN(
    conv_widths=tuple(model_config.conv_widths),
    fc_width=model_config.fc_width,
    num_classes=model_config.num_classes,
    dropout_rate=model_config.dropout_rate,
    conv_impl=resolve_conv_impl(model_config.conv_impl, seeds_per_call),
    conv_init=conv_init,
    conv_bias=conv_bias,
    pre_bn_relu=pre_bn_relu,
  )


# ---- the same network as plain functions of the parameter dicts (for rules that run it layer by layer) ----


def batch_norm(
  x: jax.Array, scale: jax.Array, bias: jax.Array, stats: Mapping[str, jax.Array], *, use_batch: bool
) -> tuple[jax.Array, dict]:
  """flax BatchNorm (momentum BN_MOMENTUM, epsilon BN_EPSILON) over all but the channel axis.

  x: [..., C]; stats: {"mean": [C], "var": [C]} running statistics. use_batch normalises with the batch's
  biased statistics and returns the running statistics moved towards them (as flax in training mode);
  otherwise it normalises with `stats` and returns them unchanged.
  """
  if use_batch:
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes)
    var = jnp.maximum(0.0, jnp.mean(x * x, axes) - mean * mean)  # flax's fast variance
    new = {
      "mean": BN_MOMENTUM * stats["mean"] + (1 - BN_MOMENTUM) * mean,
      "var": BN_MOMENTUM * stats["var"] + (1 - BN_MOMENTUM) * var,
    }
  else:
    mean, var, new = stats["mean"], stats["var"], dict(stats)
  return (x - mean) * (jax.lax.rsqrt(var + BN_EPSILON) * scale) + bias, new


def conv_block(
  params: Mapping,
  batch_stats: Mapping,
  i: int,
  h: jax.Array,
  *,
  impl: str,
  use_batch: bool,
  pre_bn_relu: bool = False,
  conv_out: jax.Array | None = None,
) -> tuple[jax.Array, dict]:
  """Block i (1-based) of the CNN: conv -> [ReLU ->] BN -> ReLU -> 2x2 max-pool.

  h: [N, H, W, Cin] -> ([N, H/2, W/2, Cout], new running statistics of bn{i}). conv_out: the conv output
  if already computed (conv + bias), to avoid recomputing it.
  """
  conv = params[f"conv{i}"]
  z = conv3x3(h, conv["kernel"], impl) if conv_out is None else conv_out
  if conv_out is None and "bias" in conv:
    z = z + conv["bias"]
  if pre_bn_relu:
    z = jax.nn.relu(z)
  bn = params[f"bn{i}"]
  z, stats = batch_norm(z, bn["scale"], bn["bias"], batch_stats[f"bn{i}"], use_batch=use_batch)
  return max_pool_2x2(jax.nn.relu(z)), stats


def readout_head(params: Mapping, h: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The FC part without dropout: h [N, H, W, C] (conv3 block output) -> (logits [N, K], fc1 features [N, F])."""
  h = adaptive_avg_pool(h, 4)
  h = jnp.transpose(h, (0, 3, 1, 2)).reshape(h.shape[0], -1)  # PyTorch (C, H, W) flatten order
  fc1 = jax.nn.relu(h @ params["fc1"]["kernel"] + params["fc1"]["bias"])
  return fc1 @ params["fc2"]["kernel"] + params["fc2"]["bias"], fc1
