"""Backpropagation: updates are jax.grad of the cross-entropy (the reference BP condition, docs/methods.md §4.1,
§4.5)."""

from typing import Any

import jax
import optax

from brainalign import optim
from brainalign.rules import losses
from brainalign.types import LearningRule


def create(model: Any, rule_config: Any, *, steps_per_epoch: int) -> LearningRule:
  """BP with the reference optimiser: clip 1.0 -> L2 1e-4 inside Adam(1e-3) -> per-epoch cosine (config)."""

  def init_fn(params, key):
    del params, key
    return optax.EmptyState()

  def update_fn(params, batch_stats, rule_state, batch, key):
    def loss_fn(p):
      (logits, _), new_vars = model.apply(
        {"params": p, "batch_stats": batch_stats},
        batch["image"],
        train=True,
        rngs={"dropout": key},
        mutable=["batch_stats"],
      )
      return losses.cross_entropy(logits, batch["label"]), (logits, new_vars["batch_stats"])

    (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    metrics = {"loss": loss, "accuracy": losses.accuracy(logits, batch["label"])}
    return grads, new_stats, rule_state, metrics

  return LearningRule(
    init=init_fn,
    update=update_fn,
    optimizer=optim.torch_adam(rule_config, steps_per_epoch),
    description="backpropagation (Adam, L2 in the gradient, global-norm clip, per-epoch cosine)",
  )
