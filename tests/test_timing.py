"""brainalign.timing: wall seconds per stage add up to the measured total, compilation is attributed to the
stage that compiled, and a run's table reaches run_info.json."""

import time

import jax
import jax.numpy as jnp
import pytest

from brainalign import timing


def test_stage_seconds_and_shares():
  clock = timing.Clock()
  with clock.stage("a", "bp"):
    time.sleep(0.15)
  with clock.stage("a", "bp"):  # the same stage again adds up
    time.sleep(0.05)
  with clock.stage("b"):
    time.sleep(0.1)
  time.sleep(0.05)  # untimed: "other"
  rows = {(r["stage"], r["rule"]): r for r in clock.rows()}
  assert rows[("a", "bp")]["seconds"] == pytest.approx(0.2, abs=0.05)
  assert rows[("b", "")]["seconds"] == pytest.approx(0.1, abs=0.05)
  assert rows[("other", "")]["seconds"] >= 0.04
  total = clock.total
  assert sum(r["seconds"] for r in rows.values()) == pytest.approx(total, abs=0.01)
  assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0, abs=0.01)
  table = clock.table()
  assert "bp 0.2 s" in table and table.splitlines()[0].startswith("Wall time")


def test_compile_time_goes_to_the_stage_that_compiles():
  clock = timing.Clock()
  fn = jax.jit(lambda x: jnp.sin(x) * 3.0 + x.sum())  # a fresh function: compiled on its first call
  x = jnp.arange(1000.0)
  with clock.stage("first"):
    fn(x).block_until_ready()
  with clock.stage("again"):
    fn(x).block_until_ready()  # cached: nothing compiled
  rows = {r["stage"]: r for r in clock.rows()}
  assert rows["first"]["compile_seconds"] > 0
  assert rows["again"]["compile_seconds"] == 0
  assert rows["first"]["compile_seconds"] <= rows["first"]["seconds"] + 1e-3
  with timing.Clock().stage("outside"):
    pass
  fn2 = jax.jit(lambda x: x * 2.0)
  fn2(x).block_until_ready()  # compiled while no stage is open: counted nowhere, and no error
  assert timing._active == []
