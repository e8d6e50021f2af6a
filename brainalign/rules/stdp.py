"""Spike-timing-dependent plasticity (STDP) of the conv layers, with a backprop-trained readout.

Both variants train FC1, FC2 and the BatchNorm affine parameters (γ, β of bn1-bn3) by Adam on the
cross-entropy (gradients flow back through the convs to the BN parameters, docs/methods.md §4.1); the conv kernels
change only by STDP (`optax.multi_transform` labels "stdp" / "readout"), and are clamped to their bounds after
every step (`LearningRule.project`). The network is the study's STDP network: conv -> ReLU -> BN -> ReLU ->
pool (`pre_bn_relu`, docs/methods.md §3.1), no dropout.

Variants (`rule_config.variant`; hyper-parameters in `rule_config.reference` / `rule_config.standard`):

"reference": the study's code exactly (docs/methods.md §4.4b), which is DEFECTIVE (§6.2): per layer, in a first
    training-mode forward pass, channel means of the layer input (pre) and of R(W ⊛ input) (post) become
    rates sigmoid(·); first-spike times τ of Bernoulli(rate/10) trains over 10 steps (11 if silent);
    Δt = τ_post − τ_pre; D[i, j] = clip(mean_n[A₊ e^{−max(Δt,0)/τ₊} − A₋ e^{min(Δt,0)/τ₋}], ±0.002) — as
    implemented, post-after-pre DEPRESSES (the opposite of the stated rule) and the change is at most ≈ 6.3e-7
    per step; W[:, :, i, j] += 5e-4 D[i, j] at every tap; clip(W, −1, 1). Then a second training-mode forward
    pass with the updated kernels gives the cross-entropy for the Adam step (BN running statistics therefore
    move twice per step).
"standard": pair-based trace STDP with the correct sign, computed at every spatial position (ngc-learn's conv
    form). For each conv layer, on the first `batch_size` images of the batch: the layer input (from the same
    training forward pass as the loss, stop-gradient) is scaled per image to [0, 1] rates and drawn as
    Bernoulli(max_rate · rate) spike trains over `time_steps` steps; integrate-and-fire neurons (threshold,
    reset to 0) integrate the conv of the input spikes with W; optional lateral inhibition keeps only the
    k_wta most depolarised channels that cross threshold at each position and step (Kheradpisheh et al.
    2018). Exponential traces x_t = e^{−1/τ} x_{t−1} + s_t; the kernel change is
        ΔW = A₊ (w_max − W) ⊙ C(x_pre, s_post) − A₋ (W − w_min) ⊙ C(s_pre, x_post)
    with C(a, b)[u, v, i, j] = mean over images and positions, summed over time, of a[y+u−1, x+v−1, i] b[y, x, j]
    (the conv weight-gradient form, one correlation for all steps): pre before post potentiates, post before
    pre depresses, the soft bound keeps W inside [w_min, w_max]; W += learning_rate ΔW, then clipped.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from brainalign import models
from brainalign.rules import losses
from brainalign.types import LearningRule

VARIANTS = ("reference", "standard")


# ---------------------------------------------------------------- reference


def first_spike_times(key: jax.Array, values: jax.Array, steps: int) -> jax.Array:
  """Reference coding: rate = sigmoid(values), spikes ~ Bernoulli(rate / steps) at t = 0..steps−1; the first
  spike's t, or steps + 1 if none. values: [N, C] -> float32 [N, C]."""
  rate = jax.nn.sigmoid(values)
  spikes = jax.random.bernoulli(key, rate / steps, (steps,) + values.shape)  # [T, N, C]
  t = jnp.arange(steps, dtype=jnp.float32).reshape((steps,) + (1,) * values.ndim)
  return jnp.min(jnp.where(spikes, t, float(steps + 1)), axis=0)


def reference_delta(
  tau_pre: jax.Array,
  tau_post: jax.Array,
  *,
  a_plus: float,
  a_minus: float,
  tau_plus: float,
  tau_minus: float,
  clip: float,
) -> jax.Array:
  """The reference change per channel pair, sign as implemented. tau_pre [N, I], tau_post [N, J] -> D [I, J].

  D = clip(mean_n[A₊ exp(−max(Δt, 0)/τ₊) − A₋ exp(min(Δt, 0)/τ₋)], ±clip), Δt = τ_post − τ_pre."""
  dt = tau_post[:, None, :] - tau_pre[:, :, None]  # [N, I, J]
  d = a_plus * jnp.exp(-jnp.maximum(dt, 0.0) / tau_plus) - a_minus * jnp.exp(jnp.minimum(dt, 0.0) / tau_minus)
  return jnp.clip(d.mean(axis=0), -clip, clip)


def _reference_deltas(params, batch_stats, x, key, *, impl, rc):
  """The STDP forward pass: per-layer D [Cin, Cout] from the old kernels, and the moved BN statistics."""
  stats, h, deltas = dict(batch_stats), x, {}
  for i, k in zip((1, 2, 3), jax.random.split(key, 3)):
    conv = params[f"conv{i}"]
    z = models.conv3x3(h, conv["kernel"], impl) + (conv["bias"] if "bias" in conv else 0.0)
    k_pre, k_post = jax.random.split(k)
    tau_pre = first_spike_times(k_pre, h.mean(axis=(1, 2)), rc.time_steps)
    tau_post = first_spike_times(k_post, jax.nn.relu(z).mean(axis=(1, 2)), rc.time_steps)
    deltas[f"conv{i}"] = reference_delta(
      tau_pre,
      tau_post,
      a_plus=rc.a_plus,
      a_minus=rc.a_minus,
      tau_plus=rc.tau_plus,
      tau_minus=rc.tau_minus,
      clip=rc.delta_clip,
    )
    h, stats[f"bn{i}"] = models.conv_block(params, stats, i, h, impl=impl, use_batch=True, pre_bn_relu=True, conv_out=z)
  return deltas, stats


# ---------------------------------------------------------------- standard


def conv_correlation(pre: jax.Array, post: jax.Array, impl: str = "xla") -> jax.Array:
  """C[u, v, i, j] = Σ_{n, y, x} pre[n, y+u−1, x+v−1, i] post[n, y, x, j] (zero padding): the weight gradient
  of a 3x3 SAME conv, i.e. the correlation of presynaptic maps with postsynaptic maps at every position.
  pre: [B, H, W, I], post: [B, H, W, J] -> [3, 3, I, J]."""
  kernel0 = jnp.zeros((3, 3, pre.shape[-1], post.shape[-1]), pre.dtype)
  _, pull = jax.vjp(lambda k: models.conv3x3(pre, k, impl), kernel0)
  return pull(post)[0]


def exponential_trace(spikes: jax.Array, decay: float) -> jax.Array:
  """x_t = decay · x_{t−1} + s_t (x_{−1} = 0) along axis 0, as one [T, T] matmul. spikes: [T, ...]."""
  t = jnp.arange(spikes.shape[0])
  weights = jnp.where(t[:, None] >= t[None, :], decay ** (t[:, None] - t[None, :]).astype(jnp.float32), 0.0)
  return jnp.tensordot(weights, spikes, axes=1)


def integrate_and_fire(currents: jax.Array, *, threshold: float, k_wta: int) -> jax.Array:
  """IF neurons over time (lax.scan): v_t = v_{t−1} + I_t; spike where v_t ≥ threshold, then v = 0. With
  k_wta > 0, at each position only the k most depolarised channels among those above threshold fire.
  currents: [T, ..., C] -> spikes float32 [T, ..., C]."""

  def step(v, current):
    v = v + current
    fire = v >= threshold
    if 0 < k_wta < v.shape[-1]:
      kth = jax.lax.top_k(v, k_wta)[0][..., -1:]  # [..., 1]
      fire = fire & (v >= kth)
    return jnp.where(fire, 0.0, v), fire.astype(jnp.float32)

  _, spikes = jax.lax.scan(step, jnp.zeros_like(currents[0]), currents)
  return spikes


def stdp_conv_update(
  pre_spikes: jax.Array,
  post_spikes: jax.Array,
  kernel: jax.Array,
  *,
  a_plus: float,
  a_minus: float,
  tau: float,
  w_min: float,
  w_max: float,
  impl: str = "xla",
) -> jax.Array:
  """Pair-based trace STDP of a 3x3 conv kernel (correct sign, soft bounds). Returns ΔW [3, 3, I, J].

  pre_spikes: [T, B, H, W, I]; post_spikes: [T, B, H, W, J] (same H, W: stride 1, SAME).
  ΔW = A₊ (w_max − W) C(x_pre, s_post) − A₋ (W − w_min) C(s_pre, x_post), C summed over time and averaged
  over images and positions; x = exponential traces with decay e^{−1/τ} that include the current step."""
  decay = math.exp(-1.0 / tau)
  x_pre, x_post = exponential_trace(pre_spikes, decay), exponential_trace(post_spikes, decay)
  flat = lambda a: a.reshape((-1,) + a.shape[2:])  # [T*B, H, W, C]
  count = pre_spikes.shape[1] * pre_spikes.shape[2] * pre_spikes.shape[3]
  ltp = conv_correlation(flat(x_pre), flat(post_spikes), impl) / count
  ltd = conv_correlation(flat(pre_spikes), flat(x_post), impl) / count
  return a_plus * (w_max - kernel) * ltp - a_minus * (kernel - w_min) * ltd


def input_rates(h: jax.Array) -> jax.Array:
  """Per-image min-max scaling to [0, 1] (the image is signed after normalisation; blocks are ≥ 0).
  h: [B, H, W, C] -> [B, H, W, C]."""
  lo = h.min(axis=(1, 2, 3), keepdims=True)
  hi = h.max(axis=(1, 2, 3), keepdims=True)
  return (h - lo) / jnp.maximum(hi - lo, 1e-12)


def _standard_layer(key, h, kernel, *, impl, rc):
  """Spikes of one conv layer and its STDP change. h: [B, H, W, I] layer input -> (ΔW, post firing rate)."""
  h = jax.lax.stop_gradient(h[: rc.batch_size])
  steps = rc.time_steps
  pre = jax.random.bernoulli(key, rc.max_rate * input_rates(h), (steps,) + h.shape).astype(jnp.float32)
  currents = models.conv3x3(pre.reshape((-1,) + h.shape[1:]), kernel, impl)  # all steps in one conv
  post = integrate_and_fire(
    currents.reshape((steps,) + h.shape[:3] + (kernel.shape[-1],)), threshold=rc.threshold, k_wta=rc.k_wta
  )
  dw = stdp_conv_update(
    pre, post, kernel, a_plus=rc.a_plus, a_minus=rc.a_minus, tau=rc.tau, w_min=rc.w_min, w_max=rc.w_max, impl=impl
  )
  return dw, post.mean()


# ---------------------------------------------------------------- the rule


def _forward_loss(params, batch_stats, x, labels, *, impl):
  """Training-mode forward of the STDP network without dropout: (CE, (logits, block inputs, new stats))."""
  stats, h, inputs = dict(batch_stats), x, []
  for i in (1, 2, 3):
    inputs.append(h)
    h, stats[f"bn{i}"] = models.conv_block(params, stats, i, h, impl=impl, use_batch=True, pre_bn_relu=True)
  logits, _ = models.readout_head(params, h)
  return losses.cross_entropy(logits, labels), (logits, inputs, stats)


def is_stdp(path: tuple) -> bool:
  """The parameters STDP changes: the conv kernels (path = (layer, name))."""
  return path[0] in ("conv1", "conv2", "conv3") and path[-1] == "kernel"


def _without_stdp_kernels(grads: dict) -> dict:
  """The gradient tree with its conv-kernel entries zeroed (they are replaced by the STDP change)."""
  return {k: {n: (jnp.zeros_like(g) if is_stdp((k, n)) else g) for n, g in v.items()} for k, v in grads.items()}


def _description(variant: str, rc: Any) -> str:
  if variant == "reference":
    return (
      "STDP, reference variant: REPRODUCES A DEFECTIVE RULE (docs/methods.md §6.2): first-spike times of "
      "channel means, post-after-pre depresses (sign opposite to the stated rule), ≤ 6.3e-7 per "
      "step, one value per channel pair copied to all taps; convs stay ≈ at initialisation; "
      "FC1/FC2/BN affine by Adam"
    )
  return (
    f"STDP, standard variant: pair-based trace STDP at every position (pre before post "
    f"potentiates), soft bounds [{float(rc.w_min)}, {float(rc.w_max)}], IF neurons, {rc.time_steps} steps, "
    f"k-WTA {rc.k_wta or 'off'}; FC1/FC2/BN affine by Adam"
  )


def create(model: Any, rule_config: Any, *, steps_per_epoch: int) -> LearningRule:
  """STDP rule of the configured variant; hyper-parameters from rule_config.<variant>."""
  del steps_per_epoch
  variant = rule_config.variant
  if variant not in VARIANTS:
    raise ValueError(f"stdp: variant must be one of {VARIANTS}, got {variant!r}")
  if not model.pre_bn_relu:
    raise ValueError(
      "stdp: the STDP network needs the block order conv -> ReLU -> BN -> ReLU -> pool; "
      "set rule_configs.stdp.pre_bn_relu=True"
    )
  rc = rule_config[variant]
  impl = model.conv_impl
  lr, w_min, w_max = float(rc.learning_rate), float(rc.w_min), float(rc.w_max)

  def init_fn(params, key):
    del params, key
    return optax.EmptyState()

  def update_fn(params, batch_stats, rule_state, batch, key):
    x, labels = batch["image"], batch["label"]
    deltas, metrics = {}, {}
    if variant == "reference":
      d, stats = _reference_deltas(params, batch_stats, x, key, impl=impl, rc=rc)
      deltas = {k: jnp.broadcast_to(v, (3, 3) + v.shape) for k, v in d.items()}  # every tap
      moved = {
        k: {n: (jnp.clip(a + lr * deltas[k], w_min, w_max) if is_stdp((k, n)) else a) for n, a in v.items()}
        for k, v in params.items()
      }
      (loss, (logits, _, stats)), grads = jax.value_and_grad(
        lambda p: _forward_loss(p, stats, x, labels, impl=impl), has_aux=True
      )(moved)
    else:
      (loss, (logits, inputs, stats)), grads = jax.value_and_grad(
        lambda p: _forward_loss(p, batch_stats, x, labels, impl=impl), has_aux=True
      )(params)
      for i, k in zip((1, 2, 3), jax.random.split(key, 3)):
        deltas[f"conv{i}"], metrics[f"post_rate_conv{i}"] = _standard_layer(
          k, inputs[i - 1], params[f"conv{i}"]["kernel"], impl=impl, rc=rc
        )
    updates = _without_stdp_kernels(grads)
    for k, dw in deltas.items():
      updates[k] = dict(updates[k], kernel=-dw)  # sgd(lr) turns −ΔW into W += lr ΔW
    metrics.update(
      loss=loss,
      accuracy=losses.accuracy(logits, labels),
      **{f"mean_abs_dw_{k}": jnp.abs(lr * dw).mean() for k, dw in deltas.items()},
    )
    return updates, stats, rule_state, metrics

  def project(params):
    return {
      k: {n: (jnp.clip(a, w_min, w_max) if is_stdp((k, n)) else a) for n, a in v.items()} for k, v in params.items()
    }

  labels = lambda params: {k: {n: ("stdp" if is_stdp((k, n)) else "readout") for n in v} for k, v in params.items()}
  optimizer = optax.multi_transform({"stdp": optax.sgd(lr), "readout": optax.adam(rc.readout_learning_rate)}, labels)
  return LearningRule(
    init=init_fn, update=update_fn, optimizer=optimizer, project=project, description=_description(variant, rc)
  )
