"""Orbax checkpoints of multi-seed states hold every leaf of every rule's state (oracle: the saved arrays)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brainalign import checkpointing, models, rules, train
from brainalign.configs import common

SMALL = dict(conv_widths=(4, 8, 8), fc_width=16)


@pytest.mark.parametrize("rule_name,variant", [("fa", "standard"), ("pc", "reference"), ("stdp", "standard")])
def test_stateful_rule_states_round_trip_exactly(tmp_path, rule_name, variant):
  """A 2-seed state after one training step (FA: feedback kernels + SGD momentum; PC: prediction kernels
  P2/P3 + the multi-transform optimiser; STDP: Adam readout state) restores bit-for-bit into a template built
  from OTHER seeds, and a restored run continues exactly as the original one."""
  c = common.base_config()
  rc = c.rule_configs[rule_name]
  rc.variant = variant
  model = models.CNN(
    conv_impl="im2col", conv_init=rc.conv_init, conv_bias=rc.conv_bias, pre_bn_relu=rc.pre_bn_relu, **SMALL
  )
  rule = rules.create(rule_name, model, rc, steps_per_epoch=2)
  init = jax.vmap(functools.partial(train.create_train_state, model=model, rule=rule, image_shape=(32, 32, 3)))
  state = init(jnp.asarray(train.seed_key_data((3, 4))))
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 16).astype(np.int32))
  step = train.make_train_step(
    model,
    rule,
    batch_size=8,
    steps_per_epoch=2,
    mean=np.full(3, 0.5, np.float32),
    std=np.full(3, 0.25, np.float32),
    pad=4,
    flip=True,
  )
  run = train.make_epoch_runner(step, steps_per_epoch=2, driver="python")
  state, _ = run(state, images, labels)
  saved = jax.tree.map(np.asarray, state)
  manager = checkpointing.create_manager(tmp_path / "ckpt")
  checkpointing.save(manager, 1, state)
  manager.wait_until_finished()

  template = init(jnp.asarray(train.seed_key_data((8, 9))))
  epoch, restored = checkpointing.restore_latest(checkpointing.create_manager(tmp_path / "ckpt"), template)
  assert epoch == 1
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, restored), saved)
  assert jax.tree.leaves(saved.rule_state) or rule_name == "stdp"  # FA and PC do carry rule state
  a, _ = run(jax.tree.map(jnp.asarray, saved), images, labels)
  b, _ = run(restored, images, labels)
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, a.params), jax.tree.map(np.asarray, b.params))
