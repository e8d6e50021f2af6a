"""Compile once: the train step, the feature extractor and the RSA grid are traced once for a run's shapes, so a
retrace per epoch, per checkpoint, per rule or per pair set fails here (chex.assert_max_traces)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brainalign import features, models, rsa, rules, train
from brainalign.configs import common

SMALL = dict(conv_widths=(4, 8, 8), fc_width=16)


@pytest.fixture(autouse=True)
def _fresh_counters():
  chex.clear_trace_counter()
  yield
  chex.clear_trace_counter()


def _model_and_rule(name="bp"):
  rc = common.base_config().rule_configs[name]
  model = models.CNN(conv_impl="im2col", conv_init=rc.conv_init, conv_bias=rc.conv_bias, **SMALL)
  return model, rules.create(name, model, rc, steps_per_epoch=2)


def test_train_step_is_traced_once_over_epochs():
  """Three epochs of two FA steps, with the diagnostic last step: each step function is traced exactly once."""
  model, rule = _model_and_rule("fa")
  make = functools.partial(
    train.make_train_step,
    model,
    rule,
    batch_size=4,
    steps_per_epoch=2,
    mean=np.zeros(3),
    std=np.ones(3),
    pad=4,
    flip=True,
  )
  step = chex.assert_max_traces(make(), n=1)
  diagnose = make(diagnose=True)

  def last(*args):  # its own code object: chex counts traces per code object, and both steps share `step`'s
    return diagnose(*args)

  last = chex.assert_max_traces(last, n=1)
  run = train.make_epoch_runner(step, steps_per_epoch=2, driver="python", last_step=last)
  init = jax.vmap(functools.partial(train.create_train_state, model=model, rule=rule, image_shape=(32, 32, 3)))
  state = init(jnp.asarray(train.seed_key_data((1, 2))))
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
  labels = jnp.arange(8, dtype=jnp.int32) % 10
  for _ in range(3):
    state, _ = run(state, images, labels)
  assert int(state.epoch[0]) == 3


def test_extractor_is_traced_once_over_checkpoints_and_chunks():
  """Features of 20 images in chunks of 8 (the last one padded) for three different parameter sets (three
  checkpoints): one trace."""
  model, rule = _model_and_rule()

  @functools.partial(chex.assert_max_traces, n=1)
  def forward(variables, images, use_batch):
    del use_batch
    return model.apply({"params": variables["params"], "batch_stats": variables["batch_stats"]}, images, train=False)[1]

  extract = features.make_extractor(model, bn_mode="running", batch_size=8, rule_features=forward)
  init = jax.vmap(functools.partial(train.create_train_state, model=model, rule=rule, image_shape=(32, 32, 3)))
  images = np.random.default_rng(1).normal(size=(20, 32, 32, 3)).astype(np.float32)
  for seeds in ((1, 2), (3, 4), (5, 6)):
    state = init(jnp.asarray(train.seed_key_data(seeds)))
    out = extract(state.params, state.batch_stats, images, state.rule_state)
    assert out["fc1"].shape == (2, 20, 16)


def test_rsa_grid_is_traced_once_over_rules_and_pair_sets(monkeypatch):
  """Model RDMs of three rules with the same shapes, and rho on three different pair subsets of one size: the
  model-RDM and the Spearman functions are traced once each (the subset is an argument, not a constant)."""
  monkeypatch.setattr(
    rsa, "_model_rdms", jax.jit(chex.assert_max_traces(rsa._model_rdms_impl, n=1), static_argnames=("metric",))
  )
  monkeypatch.setattr(rsa, "_spearman_at", jax.jit(chex.assert_max_traces(rsa._spearman_at_impl, n=1)))
  rng = np.random.default_rng(2)
  n, p = 12, 66
  for _ in range(3):  # three rules
    feats = [jnp.asarray(rng.normal(size=(2, 3, n, d)), jnp.float32) for d in (4, 6)]
    vectors = rsa.model_rdms(feats)
    for _ in range(3):  # three pair sets of one size
      flat = np.sort(rng.choice(p, 40, replace=False))
      ranks = rsa.rank_brain(jnp.asarray(rng.normal(size=(2, 3, 40)), jnp.float32))
      assert rsa.spearman_at(vectors, ranks, flat).shape == (2, 3, 2, 3, 2)
