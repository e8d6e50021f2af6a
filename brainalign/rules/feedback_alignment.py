"""Feedback alignment (FA): backprop whose backward pass sends the error down through fixed random kernels B.

Variants (`rule_config.variant`):
  "reference": what the study's code did (docs/methods.md §4.2b): B only between conv layers (conv2 and conv3 send
      their input error through B; FC1 and FC2 are exact, so the error entering conv3 uses the true W_FC1ᵀ;
      conv1's input error goes to the image and is unused); kaiming-normal W, xavier-normal B, trainable
      zero-initialised conv bias; SGD(5e-4, momentum 0.9, L2 1e-4), per-epoch cosine, clip 1.0, dropout 0.3.
      The FA/BP hybrid of docs/methods.md §6.4.
  "standard": the textbook rule (Lillicrap et al. 2016): B at every layer that sends an error down (conv2,
      conv3, fc1, fc2), same initialisation and optimiser type; its own learning rate (configs: 1e-2, since
      random feedback at the FC layers leaves SGD 5e-4 at chance for the first epochs).
  "dfa": direct feedback alignment (Nøkland 2016): the output error e = ∂L/∂logits is sent straight to the
      output of every hidden layer (conv1-conv3 block outputs, FC1) through a fixed B_l [classes, width],
      broadcast over spatial positions (as biotorch); FC2 gets the exact gradient. Costs one extra forward pass
      (e is computed first, then injected with `models.inject_error`).
Weight gradients are always the exact local ones (`models.fa_conv3x3`, `models.fa_dense`, jax.custom_vjp);
BatchNorm, ReLU, pooling and dropout backward are exact. B lives in the rule state and never changes.

Diagnostics (metrics of `update(..., diagnose=True)` when `diagnostics`; the training loop asks for them on
the last step of every epoch, so they cost one extra backward pass per epoch, not per step): per layer, the
angle (degrees) between the FA update and the true BP gradient of the same batch (same dropout mask), and
between each W and its B (their alignment).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from brainalign import optim
from brainalign.rules import diagnostics, losses
from brainalign.types import LearningRule

FEEDBACK_LAYERS = {
  "reference": ("conv2", "conv3"),
  "standard": ("conv2", "conv3", "fc1", "fc2"),
  "dfa": ("conv1", "conv2", "conv3", "fc1"),
}


def xavier_normal(key: jax.Array, shape: tuple, dtype=jnp.float32) -> jax.Array:
  """PyTorch xavier_normal_: N(0, 2 / (fan_in + fan_out)) with fan = channels x receptive field.

  shape: [3, 3, Cin, Cout] (conv, HWIO) or [I, O] (dense)."""
  receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
  fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
  return jax.random.normal(key, shape, dtype) * np.sqrt(2.0 / (fan_in + fan_out))


_WHERE = {
  "reference": "conv->conv only; FC layers exact (reproduces the reference FA/BP hybrid, docs/methods.md §6.4)",
  "standard": "at every layer incl. FC (Lillicrap et al. 2016)",
  "dfa": "from the output error straight to every hidden layer (direct FA, Nøkland 2016)",
}


def _init_feedback(params, key, *, variant: str, layers: tuple) -> dict:
  """{"feedback": {layer: B}}: xavier-normal B shaped like the layer's kernel, or [classes, layer width] (dfa)."""
  keys = jax.random.split(key, len(layers))
  if variant == "dfa":  # B_l: [classes, output width of layer l]
    k = params["fc2"]["kernel"].shape[-1]
    return {
      "feedback": {name: xavier_normal(kk, (k, params[name]["kernel"].shape[-1])) for name, kk in zip(layers, keys)}
    }
  return {"feedback": {name: xavier_normal(k, params[name]["kernel"].shape) for name, k in zip(layers, keys)}}


def _angles(params, updates, true_grads, feedback: dict, variant: str) -> dict:
  """Diagnostics: the angle of each layer's FA update to the true gradient, and (not dfa) of W to B."""
  out = diagnostics.per_layer(
    diagnostics.angle_degrees, updates, true_grads, diagnostics.conv_and_fc_layers(params), "angle_fa_vs_bp"
  )
  if variant != "dfa":
    out.update(
      {f"angle_w_vs_b_{name}": diagnostics.angle_degrees(params[name]["kernel"], b) for name, b in feedback.items()}
    )
  return out


def create(model: Any, rule_config: Any, *, steps_per_epoch: int) -> LearningRule:
  """FA of `rule_config.variant`; optimiser clip -> L2 -> SGD momentum -> per-epoch cosine from the variant's
  block `rule_config.<variant>` (learning_rate, momentum, weight_decay, clip_norm, schedule, schedule_epochs)."""
  variant = rule_config.variant
  if variant not in FEEDBACK_LAYERS:
    raise ValueError(f"fa: variant must be one of {sorted(FEEDBACK_LAYERS)}, got {variant!r}")
  if variant not in rule_config:
    raise ValueError(
      f"fa: rule config has no optimiser block {variant!r} (rule_configs.fa.{variant}."
      "learning_rate etc.; see brainalign/configs/common.py)"
    )
  layers = FEEDBACK_LAYERS[variant]
  diagnostics_on = bool(rule_config.diagnostics)

  def loss_fn(p, batch_stats, batch, key, feedback=None, error_signals=None):
    (logits, _), new_vars = model.apply(
      {"params": p, "batch_stats": batch_stats},
      batch["image"],
      train=True,
      rngs={"dropout": key},
      mutable=["batch_stats"],
      feedback=feedback,
      error_signals=error_signals,
    )
    return losses.cross_entropy(logits, batch["label"]), (logits, new_vars["batch_stats"])

  def update_fn(params, batch_stats, rule_state, batch, key, *, diagnose=False):
    if variant == "dfa":
      _, (logits0, _) = loss_fn(params, batch_stats, batch, key)  # same dropout mask as the pass below
      e = jax.grad(losses.cross_entropy)(jax.lax.stop_gradient(logits0), batch["label"])  # [N, classes]
      signals = {name: e @ b for name, b in rule_state["feedback"].items()}
      grad_fn = jax.value_and_grad(lambda p: loss_fn(p, batch_stats, batch, key, error_signals=signals), has_aux=True)
    else:
      grad_fn = jax.value_and_grad(
        lambda p: loss_fn(p, batch_stats, batch, key, feedback=rule_state["feedback"]), has_aux=True
      )
    (loss, (logits, new_stats)), updates = grad_fn(params)
    metrics = {"loss": loss, "accuracy": losses.accuracy(logits, batch["label"])}
    if diagnose and diagnostics_on:
      true_grads = jax.grad(lambda p: loss_fn(p, batch_stats, batch, key)[0])(params)
      metrics.update(_angles(params, updates, true_grads, rule_state["feedback"], variant))
    return updates, new_stats, rule_state, metrics

  return LearningRule(
    init=functools.partial(_init_feedback, variant=variant, layers=layers),
    update=update_fn,
    optimizer=optim.torch_sgd(rule_config[variant], steps_per_epoch),
    description=f"feedback alignment, {variant} variant: fixed xavier-normal B {_WHERE[variant]}; "
    "SGD momentum, L2 in the gradient, global-norm clip, per-epoch cosine",
  )
