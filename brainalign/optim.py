"""Optimisers and schedules built from a rule's config, matching the reference implementation's PyTorch settings."""

from typing import Any

import jax.numpy as jnp
import optax


def per_epoch_cosine(base_lr: float, schedule_epochs: int, steps_per_epoch: int) -> optax.Schedule:
  """PyTorch CosineAnnealingLR(T_max=schedule_epochs, eta_min=0) stepped once per epoch.

  lr(step) = base_lr * (1 + cos(pi * e / T)) / 2 with e = step // steps_per_epoch, constant within an epoch.
  """

  def schedule(step):
    epoch = step // steps_per_epoch
    return base_lr * 0.5 * (1.0 + jnp.cos(jnp.pi * epoch / schedule_epochs))

  return schedule


def make_schedule(rule_config: Any, steps_per_epoch: int) -> optax.Schedule:
  """'cosine_per_epoch' (reference BP/FA) or 'constant'."""
  if rule_config.schedule == "cosine_per_epoch":
    return per_epoch_cosine(rule_config.learning_rate, rule_config.schedule_epochs, steps_per_epoch)
  if rule_config.schedule == "constant":
    return optax.constant_schedule(rule_config.learning_rate)
  raise ValueError(f"Unknown schedule {rule_config.schedule!r}; valid: 'cosine_per_epoch', 'constant'")


def torch_adam(rule_config: Any, steps_per_epoch: int) -> optax.GradientTransformation:
  """PyTorch Adam(weight_decay=wd) behind global-norm clipping, as the reference BP training.

  Clipping acts on the raw gradient (torch.nn.utils.clip_grad_norm_ before optimizer.step); the L2 term
  wd * param is then added to the gradient inside Adam (not AdamW's decoupled decay).
  """
  return optax.chain(
    optax.clip_by_global_norm(rule_config.clip_norm) if rule_config.clip_norm else optax.identity(),
    optax.add_decayed_weights(rule_config.weight_decay),
    optax.scale_by_adam(b1=rule_config.b1, b2=rule_config.b2, eps=rule_config.eps),
    optax.scale_by_learning_rate(make_schedule(rule_config, steps_per_epoch)),
  )


def torch_sgd(rule_config: Any, steps_per_epoch: int) -> optax.GradientTransformation:
  """PyTorch SGD(momentum, dampening 0, weight_decay=wd) behind global-norm clipping (the reference FA training).

  buf = momentum * buf + (g + wd * p); p -= lr * buf, i.e. optax.trace(decay=momentum) after the L2 term.
  """
  return optax.chain(
    optax.clip_by_global_norm(rule_config.clip_norm) if rule_config.clip_norm else optax.identity(),
    optax.add_decayed_weights(rule_config.weight_decay),
    optax.trace(decay=rule_config.momentum, nesterov=False),
    optax.scale_by_learning_rate(make_schedule(rule_config, steps_per_epoch)),
  )
