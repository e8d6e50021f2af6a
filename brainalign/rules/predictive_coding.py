"""Predictive coding (PC).

Variants (`rule_config.variant`; hyper-parameters in `rule_config.reference` / `rule_config.standard`):

"reference": the study's algorithm exactly (docs/methods.md §4.3b, defects §6.3), kept to reproduce its numbers.
    Inference (no gradients): the feed-forward states a1..a3 (BN in training mode) start r1..r3; then
    `inference_steps` Jacobi updates at rate α with fixed random top-down predictions
        p1 = tanh(U(P2 ⊛ᵀ r2 → r1)),  p2 = tanh(U(P3 ⊛ᵀ r3 → r2)),  e1 = r1 − p1,  e2 = r2 − p2
        r1 ← R(r1 − α e1);  r2 ← R(r2 + α(−e2 + A(W2 ⊛ e1)));  r3 ← R(r3 + α A(W3 ⊛ e2))
    Weight update: a second feed-forward pass (BN in training mode again, so bn1/bn2 running statistics move
    twice per step), e_l = clip(r_l − a_l, ±0.5), and the rank-1 channel-mean update identical at every tap
        ΔW1 = clip(m(x) ⊗ m(e1), ±0.01),  ΔW2 = clip(m(r1) ⊗ m(e2), ±0.01),  W += 1e-4 ΔW
    W3 and the prediction kernels P2, P3 (fixed random arrays in the rule state) never change; BN affine
    parameters are in no optimiser. Readout: FC2(R(FC1(flatten(stop_gradient(r3))))) by Adam(1e-3), no
    dropout. Features and test logits come from the inference loop.
"standard": a discriminative predictive-coding network (Whittington & Bogacz 2017; PCX): the CNN's layers
    f_1..f_5 (three conv blocks, FC1+ReLU, FC2) with value nodes x_1..x_4 (x_0 = image) and energy
        F = Σ_{l=1..4} ½‖x_l − f_l(x_{l−1})‖² + β · CE(f_5(x_4), y)
    (the output clamped to the label; β = `output_weight`, small β = weak clamping). x starts at the
    feed-forward pass (energy = β CE), runs `inference_steps` steps x ← x − γ ∂F/∂x (lax.scan), then every
    layer's parameters get (1/β) ∂F/∂θ_l, which depends only on x_{l−1}, x_l and θ_l (local). As β → 0 and
    with converged inference the updates approach the BP gradients of the CE loss. Features, test logits:
    the feed-forward pass (the equilibrium of an unclamped network).

Diagnostics (metrics): the energy before and after each inference step (`energy_stepTT`, T = 0..steps) and,
when `diagnostics`, on the steps the training loop asks for them (`update(..., diagnose=True)`: the last step
of every epoch), the cosine between each layer's PC update and the BP gradient of the CE loss of the plain
forward network on the same batch (`cos_pc_vs_bp_<layer>`).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from brainalign import models, optim
from brainalign.rules import diagnostics, losses
from brainalign.types import LearningRule

VARIANTS = ("reference", "standard")


def energy_metrics(energy: jax.Array, max_points: int = 11) -> dict:
  """Energy at (at most `max_points` evenly spaced) inference steps, `energy_stepTT` (TT = steps taken), plus
  `energy_fall_fraction`: the fraction of the steps in which the energy fell. energy: [steps + 1]."""
  steps = energy.shape[0] - 1
  keep = sorted({int(round(t)) for t in np.linspace(0, steps, min(max_points, steps + 1))})
  out = {f"energy_step{t:02d}": energy[t] for t in keep}
  out["energy_fall_fraction"] = jnp.mean(energy[1:] < energy[:-1]) if steps else jnp.float32(1.0)
  return out


# Longest inference loop unrolled on the CPU: an unrolled program grows (and compiles) linearly with the steps
# (the study's 10 steps compile in seconds; 300 steps took ~100 s), so long loops stay a loop.
MAX_UNROLL = 32


def inference_unroll(steps: int) -> int:
  """How far the inference loop's `lax.scan` is unrolled: fully on the CPU backend for up to MAX_UNROLL steps,
  where convolutions inside a loop body run several times slower than the same convolutions outside one
  (jax-ml/jax#12868; see bench/README.md), not at all elsewhere or for longer loops. The same steps are
  computed either way."""
  steps = max(int(steps), 1)
  return steps if jax.default_backend() == "cpu" and steps <= MAX_UNROLL else 1


# ---------------------------------------------------------------- reference variant: building blocks


def conv_transpose3x3(y: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
  """3x3 transposed convolution, stride 1, padding 1 (PyTorch ConvTranspose2d(C_in=Cy, C_out=Cx, 3, 1, 1)).

  y: [N, H, W, Cy]; kernel: [3, 3, Cx, Cy] = the PyTorch weight [Cy, Cx, 3, 3] permuted (2, 3, 1, 0). It is the
  adjoint of conv3x3(·, kernel): out[n, a, b, c] = Σ_{u,v,o} y[n, a+1−u, b+1−v, o] kernel[u, v, c, o].
  Returns [N, H, W, Cx].
  """
  return models.conv3x3(y, jnp.swapaxes(kernel[::-1, ::-1], 2, 3), impl)


def upsample_nearest(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """PyTorch F.interpolate(mode="nearest") to `size`: source index floor(i * in / out). [N, h, w, C] -> [N, H, W, C]."""
  rows = (np.arange(size[0]) * x.shape[1]) // size[0]
  cols = (np.arange(size[1]) * x.shape[2]) // size[1]
  return x[:, rows][:, :, cols]


def avg_pool_2x2(x: jax.Array) -> jax.Array:
  """F.avg_pool2d(x, 2) for NHWC with even H, W."""
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def channel_mean_outer(err: jax.Array, pre: jax.Array, *, clip: float) -> jax.Array:
  """The reference PC weight change: clip(m(pre) ⊗ m(err), ±clip) copied to all 9 taps.

  err: [N, H, W, Cout]; pre: [N, H', W', Cin] (the layer input). Returns [3, 3, Cin, Cout] (HWIO)."""
  outer = jnp.outer(pre.mean(axis=(0, 1, 2)), err.mean(axis=(0, 1, 2)))  # [Cin, Cout]
  return jnp.broadcast_to(jnp.clip(outer, -clip, clip), (3, 3) + outer.shape)


def _feed_forward(params, batch_stats, x, *, impl, use_batch):
  """The three conv blocks: ([a1, a2, a3], new batch_stats)."""
  stats, acts, h = dict(batch_stats), [], x
  for i in (1, 2, 3):
    h, stats[f"bn{i}"] = models.conv_block(params, stats, i, h, impl=impl, use_batch=use_batch)
    acts.append(h)
  return acts, stats


def _predict(r_above, pred, size, impl):
  """tanh(U(P ⊛ᵀ r_above → size)) with optional bias; pred = {"kernel": [3,3,Cx,Cy], "bias": [Cx]?}."""
  h = conv_transpose3x3(r_above, pred["kernel"], impl)
  if "bias" in pred:
    h = h + pred["bias"]
  return jnp.tanh(upsample_nearest(h, size))


def reference_inference(params, rule_state, acts, *, impl, steps, rate):
  """The reference inference loop from the feed-forward states acts = [a1, a2, a3].

  Returns ((r1, r2, r3), energy [steps + 1]) with energy_t = Σ‖e1‖² + Σ‖e2‖² (summed over the batch) before
  step t+1 (t = steps: after the last step)."""
  w2, w3 = params["conv2"]["kernel"], params["conv3"]["kernel"]
  p2, p3 = rule_state["P2"], rule_state["P3"]

  def errors(r):
    r1, r2, r3 = r
    e1 = r1 - _predict(r2, p2, r1.shape[1:3], impl)
    e2 = r2 - _predict(r3, p3, r2.shape[1:3], impl)
    return e1, e2

  def energy(e1, e2):
    return jnp.sum(e1 * e1) + jnp.sum(e2 * e2)

  def step(r, _):
    r1, r2, r3 = r
    e1, e2 = errors(r)  # both errors before any update (Jacobi)
    new = (
      jax.nn.relu(r1 - rate * e1),
      jax.nn.relu(r2 + rate * (-e2 + avg_pool_2x2(models.conv3x3(e1, w2, impl)))),
      jax.nn.relu(r3 + rate * avg_pool_2x2(models.conv3x3(e2, w3, impl))),
    )
    return new, energy(e1, e2)

  r, energies = jax.lax.scan(step, tuple(acts), None, length=steps, unroll=inference_unroll(steps))
  return r, jnp.concatenate([energies, energy(*errors(r))[None]])


def _reference(model, rc, steps_per_epoch, *, diagnostics_on: bool):
  del steps_per_epoch
  impl = model.conv_impl
  if model.pre_bn_relu or model.conv_bias:
    raise ValueError("pc reference: the study's PC network has bias-free convs in conv -> BN -> ReLU -> pool order")
  steps, rate = int(rc.inference_steps), float(rc.inference_rate)

  def infer(params, batch_stats, rule_state, x, use_batch):
    acts, stats = _feed_forward(params, batch_stats, x, impl=impl, use_batch=use_batch)
    r, energy = reference_inference(params, rule_state, acts, impl=impl, steps=steps, rate=rate)
    return acts, r, energy, stats

  def local_updates(params, batch_stats, x, r):
    """Second feed-forward pass (training-mode BN) and the clipped rank-1 updates of W1, W2 (as -ΔW)."""
    a1, stats1 = models.conv_block(params, batch_stats, 1, x, impl=impl, use_batch=True)
    a2, stats2 = models.conv_block(params, batch_stats, 2, a1, impl=impl, use_batch=True)
    e1 = jnp.clip(r[0] - a1, -rc.error_clip, rc.error_clip)
    e2 = jnp.clip(r[1] - a2, -rc.error_clip, rc.error_clip)
    dw1 = channel_mean_outer(e1, x, clip=rc.update_clip)
    dw2 = channel_mean_outer(e2, r[0], clip=rc.update_clip)
    return -dw1, -dw2, dict(batch_stats, bn1=stats1, bn2=stats2)

  def update_fn(params, batch_stats, rule_state, batch, key, *, diagnose=False):
    del key
    x = batch["image"]
    _, r, energy, stats = infer(params, batch_stats, rule_state, x, True)
    r = jax.tree.map(jax.lax.stop_gradient, r)
    neg_dw1, neg_dw2, stats = local_updates(params, stats, x, r)

    def readout_loss(head):
      logits, _ = models.readout_head(head, r[2])
      return losses.cross_entropy(logits, batch["label"]), logits

    head = {"fc1": params["fc1"], "fc2": params["fc2"]}
    (loss, logits), head_grads = jax.value_and_grad(readout_loss, has_aux=True)(head)
    updates = jax.tree.map(jnp.zeros_like, params)
    updates["conv1"] = {"kernel": neg_dw1}
    updates["conv2"] = {"kernel": neg_dw2}
    updates.update(head_grads)
    metrics = {"loss": loss, "accuracy": losses.accuracy(logits, batch["label"]), **energy_metrics(energy / x.shape[0])}
    if diagnose and diagnostics_on:
      metrics.update(_cosine_with_bp(model, params, batch_stats, batch, updates, ("conv1", "conv2")))
    return updates, stats, rule_state, metrics

  def features_fn(variables, images, bn_batch_stats):
    _, r, _, _ = infer(variables["params"], variables["batch_stats"], variables["rule_state"], images, bn_batch_stats)
    _, fc1 = models.readout_head(variables["params"], r[2])
    return {
      "conv1": r[0].mean(axis=(1, 2)),
      "conv2": r[1].mean(axis=(1, 2)),
      "conv3": r[2].mean(axis=(1, 2)),
      "fc1": fc1,
    }

  def logits_fn(variables, images):
    _, r, _, _ = infer(variables["params"], variables["batch_stats"], variables["rule_state"], images, False)
    return models.readout_head(variables["params"], r[2])[0]

  return LearningRule(
    init=functools.partial(_reference_init, prediction_bias=bool(rc.prediction_bias)),
    update=update_fn,
    optimizer=_reference_optimizer(rc),
    features=features_fn,
    logits=logits_fn,
    description=f"predictive coding, reference variant: reproduces the study's defective rule "
    f"(docs/methods.md §6.3): {steps} inference steps at {rate} with fixed random "
    "top-down predictions, clipped rank-1 channel-mean updates of W1/W2 only "
    "(W3, P2, P3, BN affine never trained), Adam readout on the inferred r3; "
    "features from the inference loop",
  )


def _reference_init(params, key, *, prediction_bias: bool) -> dict:
  """P2: [3,3,C1,C2], P3: [3,3,C2,C3], PyTorch's default ConvTranspose2d init U(±1/sqrt(9·C_out))."""
  c1, c2, c3 = (params[f"conv{i}"]["kernel"].shape[-1] for i in (1, 2, 3))
  state = {}
  for name, (cx, cy), k in zip(("P2", "P3"), ((c1, c2), (c2, c3)), jax.random.split(key)):
    kk, kb = jax.random.split(k)
    state[name] = {"kernel": models.torch_default_kernel_init(kk, (3, 3, cx, cy))}
    if prediction_bias:
      state[name]["bias"] = models.torch_default_bias_init(9 * cx)(kb, (cx,))
  return state


def _reference_optimizer(rc) -> optax.GradientTransformation:
  """SGD for the local W1/W2 updates, Adam for the readout, nothing else moves."""
  labels = lambda params: {
    k: jax.tree.map(
      lambda _, k=k: "local" if k in ("conv1", "conv2") else "readout" if k in ("fc1", "fc2") else "frozen", v
    )
    for k, v in params.items()
  }
  return optax.multi_transform(
    {
      "local": optax.sgd(rc.local_learning_rate),
      "readout": optax.adam(rc.readout_learning_rate),
      "frozen": optax.set_to_zero(),
    },
    labels,
  )


# ---------------------------------------------------------------- standard variant


def _standard_layers(model):
  """f_l(params, stats, x_{l-1}) -> (prediction of x_l, new stats), l = 1..5 (5 = logits)."""
  impl, pre = model.conv_impl, model.pre_bn_relu

  def block(i):
    def f(params, stats, h):
      out, s = models.conv_block(params, stats, i, h, impl=impl, use_batch=True, pre_bn_relu=pre)
      return out, dict(stats, **{f"bn{i}": s})

    return f

  def fc1(params, stats, h):
    h = models.adaptive_avg_pool(h, 4)
    h = jnp.transpose(h, (0, 3, 1, 2)).reshape(h.shape[0], -1)
    return jax.nn.relu(h @ params["fc1"]["kernel"] + params["fc1"]["bias"]), stats

  def fc2(params, stats, h):
    return h @ params["fc2"]["kernel"] + params["fc2"]["bias"], stats

  return (block(1), block(2), block(3), fc1, fc2)


def standard_energy(params, batch_stats, xs, image, labels, *, layers, output_weight):
  """F(x, θ) summed over the batch. xs: (x_1..x_4) value nodes; returns (F, per-layer terms [5])."""
  below = (image,) + tuple(xs)
  terms = []
  for l, f in enumerate(layers[:-1]):
    pred, _ = f(params, batch_stats, below[l])
    terms.append(0.5 * jnp.sum((xs[l] - pred) ** 2))
  logits, _ = layers[-1](params, batch_stats, xs[-1])
  terms.append(output_weight * optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum())
  return sum(terms), jnp.stack(terms)


def standard_feed_forward(params, batch_stats, image, *, layers):
  """Feed-forward values (x_1..x_4), logits and the running statistics moved by this training-mode pass."""
  xs, h, stats = [], image, batch_stats
  for f in layers[:-1]:
    h, stats = f(params, stats, h)
    xs.append(h)
  logits, _ = layers[-1](params, stats, h)
  return tuple(xs), logits, stats


def standard_inference(params, batch_stats, xs, image, labels, *, layers, steps, rate, output_weight):
  """`steps` gradient steps on the value nodes: x ← x − rate ∂F/∂x. Returns (xs, energy [steps + 1])."""
  energy_fn = lambda xs: standard_energy(
    params, batch_stats, xs, image, labels, layers=layers, output_weight=output_weight
  )[0]

  def step(xs, _):
    e, g = jax.value_and_grad(energy_fn)(xs)
    return jax.tree.map(lambda x, d: x - rate * d, xs, g), e

  xs, energies = jax.lax.scan(step, xs, None, length=steps, unroll=inference_unroll(steps))
  return xs, jnp.concatenate([energies, energy_fn(xs)[None]])


def standard_weight_updates(params, batch_stats, xs, image, labels, *, layers, output_weight):
  """(1/β) ∂F/∂θ at fixed value nodes, scaled to the batch mean: each layer's update uses only
  x_{l−1}, x_l and its own parameters (F is a sum of one term per layer)."""
  n = image.shape[0]
  grad = jax.grad(
    lambda p: standard_energy(p, batch_stats, xs, image, labels, layers=layers, output_weight=output_weight)[0]
  )(params)
  return jax.tree.map(lambda g: g / (output_weight * n), grad)


def _standard(model, rc, steps_per_epoch, *, diagnostics_on: bool):
  layers = _standard_layers(model)
  steps, rate, beta = int(rc.inference_steps), float(rc.inference_rate), float(rc.output_weight)

  def init_fn(params, key):
    del params, key
    return optax.EmptyState()

  def update_fn(params, batch_stats, rule_state, batch, key, *, diagnose=False):
    del key
    image, labels = batch["image"], batch["label"]
    xs, logits, new_stats = standard_feed_forward(params, batch_stats, image, layers=layers)
    xs, energy = standard_inference(
      params, batch_stats, xs, image, labels, layers=layers, steps=steps, rate=rate, output_weight=beta
    )
    updates = standard_weight_updates(params, batch_stats, xs, image, labels, layers=layers, output_weight=beta)
    metrics = {
      "loss": losses.cross_entropy(logits, labels),
      "accuracy": losses.accuracy(logits, labels),
      **energy_metrics(energy / image.shape[0]),
    }
    if diagnose and diagnostics_on:
      metrics.update(
        _cosine_with_bp(model, params, batch_stats, batch, updates, diagnostics.conv_and_fc_layers(params))
      )
    return updates, new_stats, rule_state, metrics

  return LearningRule(
    init=init_fn,
    update=update_fn,
    optimizer=optim.torch_adam(rc, steps_per_epoch),
    description=f"predictive coding, standard variant (Whittington & Bogacz 2017 / PCX): "
    f"output clamped with weight {beta}, {steps} inference steps at {rate} on "
    "the value nodes, local weight updates of every layer, Adam",
  )


def _cosine_with_bp(model, params, batch_stats, batch, updates, layers):
  """cos(update, BP gradient of the CE of the plain forward network, training-mode BN, no dropout) per layer."""

  def loss(p):
    (logits, _), _ = model.apply(
      {"params": p, "batch_stats": batch_stats},
      batch["image"],
      train=False,
      bn_batch_stats=True,
      mutable=["batch_stats"],
    )
    return losses.cross_entropy(logits, batch["label"])

  grads = jax.grad(loss)(params)
  return diagnostics.per_layer(diagnostics.cosine, updates, grads, layers, "cos_pc_vs_bp")


def create(model: Any, rule_config: Any, *, steps_per_epoch: int) -> LearningRule:
  """PC rule of the configured variant (`rule_config.variant`), hyper-parameters from rule_config.<variant>;
  `rule_config.diagnostics` (as for FA) turns on the cosines with the BP gradient."""
  variant = rule_config.variant
  if variant not in VARIANTS:
    raise ValueError(f"pc: variant must be one of {VARIANTS}, got {variant!r}")
  build = _reference if variant == "reference" else _standard
  return build(model, rule_config[variant], steps_per_epoch, diagnostics_on=bool(rule_config.diagnostics))
