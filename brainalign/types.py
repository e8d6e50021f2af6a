"""Shared type aliases and the two data structures every part of brainalign passes around.

`TrainState` is pure data (a NamedTuple of arrays), so it checkpoints with Orbax and vmaps over seeds as is:
every leaf of a multi-seed state carries a leading [S] axis. `LearningRule` is a pair of pure functions in
the manner of an optax `GradientTransformation`.
"""

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import optax

Params = Any  # pytree of jax.Array: the model's trainable parameters
BatchStats = Any  # pytree of jax.Array: BatchNorm running statistics
RuleState = Any  # pytree of jax.Array owned by a learning rule (e.g. FA feedback kernels)
Metrics = Mapping[str, jax.Array]
Batch = Mapping[str, jax.Array]  # {"image": [B, H, W, 3] float32 normalised, "label": [B] int32}
Features = Mapping[str, jax.Array]  # {layer: [n, d_layer]}


class TrainState(NamedTuple):
  """Complete state of ONE seed's training run (a multi-seed state has a leading [S] axis on every leaf)."""

  step: jax.Array  # [] int32, optimiser steps taken
  epoch: jax.Array  # [] int32, epochs completed (0 = the initialised network)
  key: jax.Array  # [2] uint32, raw key data of this seed's base key (all randomness derives from it)
  params: Params
  batch_stats: BatchStats
  rule_state: RuleState
  opt_state: optax.OptState


class LearningRule(NamedTuple):
  """A learning rule as pure functions, in the manner of `optax.GradientTransformation`.

  init(params, key) -> rule_state
  update(params, batch_stats, rule_state, batch, key, *, diagnose=False)
        -> (updates, batch_stats, rule_state, metrics)
      `updates` has the structure of `params` and the sign of a gradient (parameters move along -updates
      after the optimiser), so any optax transformation consumes it. `metrics` holds scalars, at least
      "loss" and "accuracy" of the training batch. `diagnose` (static) adds the rule's costly diagnostics
      (e.g. angles to the true gradient) to `metrics`; the training loop passes it (only as True, so a rule
      without diagnostics need not accept it) on the last step of each epoch; the updates must not depend on it.
  optimizer: the optax transformation that turns updates into parameter steps (built from the config).
  trains: False for a rule that never changes the network (the untrained baseline): the training loop then
      evaluates epoch 0 only.
  features: optional fn(variables, images, bn_batch_stats) -> {layer: [n, d]} for rules whose readout
      features are not the plain forward pass (e.g. predictive coding's inference loop); None = forward pass.
      variables = {"params", "batch_stats", "rule_state"} of one seed.
  logits: optional fn(variables, images) -> logits [n, K] in inference mode, for rules whose predictions are
      not the plain forward pass (predictive coding's readout on the inferred state); None = forward pass.
  project: optional fn(params) -> params applied after each optimiser step (e.g. a weight clamp).
  description: one line written into the results (e.g. which variant, and any reproduced defect).
  """

  init: Callable[..., RuleState]
  update: Callable[..., tuple]
  optimizer: optax.GradientTransformation
  trains: bool = True
  features: Callable[..., Features] | None = None
  project: Callable[[Params], Params] | None = None
  description: str = ""
  logits: Callable[..., jax.Array] | None = None
