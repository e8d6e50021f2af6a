"""The untrained baseline ("random"): the initialised network, never trained.

BatchNorm keeps its initial running statistics (mean 0, var 1), as the reference Random condition, which is
evaluated in inference mode without ever running a training-mode forward pass (docs/methods.md §4.1, §4.6).
"""

from typing import Any

import jax
import optax

from brainalign.rules import losses
from brainalign.types import LearningRule


def create(model: Any, rule_config: Any, *, steps_per_epoch: int) -> LearningRule:
  """A rule with zero updates and untouched batch statistics; `trains=False` so only epoch 0 is evaluated."""
  del rule_config, steps_per_epoch

  def init_fn(params, key):
    del params, key
    return optax.EmptyState()

  def update_fn(params, batch_stats, rule_state, batch, key):
    del key
    logits, _ = model.apply({"params": params, "batch_stats": batch_stats}, batch["image"], train=False)
    metrics = {
      "loss": losses.cross_entropy(logits, batch["label"]),
      "accuracy": losses.accuracy(logits, batch["label"]),
    }
    return jax.tree.map(jax.numpy.zeros_like, params), batch_stats, rule_state, metrics

  return LearningRule(
    init=init_fn,
    update=update_fn,
    optimizer=optax.set_to_zero(),
    trains=False,
    description="untrained network (initialisation only)",
  )
