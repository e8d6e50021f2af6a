"""Step cost of every learning rule relative to BP, in the same run: one line per rule and variant.

    python bench/rules.py [--steps 3] [--reps 3] [--seeds 1] [--rules bp,fa,pc,stdp] [--variants reference,standard,dfa]
                          [--diagnostics]

Times exactly the library's training path (`rules.create`, `train.make_train_step`, `train.make_epoch_runner`
with the "auto" driver and conv implementation) for the study's network (32/64/128, FC 512) at batch 128 on
8,000 random uint8 32-px images, with each rule's hyper-parameters from brainalign/configs/common.py. Diagnostics (the
extra BP gradient some rules compute for their metrics) are off unless --diagnostics, so the ratio is the cost
of the rule itself. Each case: a warm-up block (compile), then --reps blocks of --steps steps interleaved across
cases; the median block time per step is reported, and

    step_cost_vs_bp[<rule>/<variant>]=<median step time of the rule / median step time of BP>

Targets (issue 3): pc (T inference steps) <= T + 1, stdp <= 3.
"""

import argparse
import datetime
import functools
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax
import jax.numpy as jnp
import numpy as np

from brainalign import models, rules, train
from brainalign.configs import common
from brainalign.data import training_sets

BATCH, NUM_TRAIN, SIZE = 128, 8000, 32
VARIANTS = {"fa": ("reference", "standard", "dfa"), "pc": ("reference", "standard"), "stdp": ("reference", "standard")}


def make_case(name: str, variant: str | None, seeds, steps: int, diagnostics: bool):
  """A block function advancing an [S]-seed state by `steps` library steps of rule `name`."""
  config = common.base_config()
  rc = config.rule_configs[name]
  if variant is not None:
    rc.variant = variant
  for sub in (rc, rc.get(variant) if variant else None):
    if sub is not None and "diagnostics" in sub:
      sub.diagnostics = diagnostics
  model = models.create_model(config.model, conv_init=rc.conv_init, conv_bias=rc.conv_bias, pre_bn_relu=rc.pre_bn_relu)
  spe = NUM_TRAIN // BATCH
  rule = rules.create(name, model, rc, steps_per_epoch=spe)
  step = train.make_train_step(
    model,
    rule,
    batch_size=BATCH,
    steps_per_epoch=spe,
    mean=np.asarray(training_sets.CIFAR10_MEAN, np.float32),
    std=np.asarray(training_sets.CIFAR10_STD, np.float32),
    pad=config.train.augment_pad,
    flip=config.train.augment_flip,
  )
  run = train.make_epoch_runner(step, steps_per_epoch=steps, driver=config.train.epoch_driver)
  init = jax.jit(
    jax.vmap(functools.partial(train.create_train_state, model=model, rule=rule, image_shape=(SIZE, SIZE, 3)))
  )
  box = [init(jnp.asarray(train.seed_key_data(seeds)))]

  def block(images, labels):
    box[0], _ = run(box[0], images, labels)
    jax.block_until_ready(box[0])

  return block


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--seeds", type=int, default=1)
  p.add_argument("--rules", default="bp,fa,pc,stdp")
  p.add_argument("--variants", default="reference,standard,dfa", help="those a rule does not have are skipped")
  p.add_argument("--diagnostics", action="store_true", help="time the rules with their diagnostics on")
  args = p.parse_args()
  seeds = list(common.STUDY_SEEDS[: args.seeds])
  print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
  print(
    f"jax {jax.__version__}, backend {jax.default_backend()}, device {jax.devices()[0].device_kind}, "
    f"{os.cpu_count()} cpus, python {platform.python_version()}; batch {BATCH}, seeds {len(seeds)}, "
    f"{args.steps} steps/block, {args.reps} reps, diagnostics {'on' if args.diagnostics else 'off'}, "
    f"conv_impl {models.resolve_conv_impl('auto')}, driver {train.resolve_driver('auto')}, "
    f"load {os.getloadavg()[0]:.2f}"
  )
  rng = np.random.default_rng(0)
  images = jax.device_put(rng.integers(0, 256, (NUM_TRAIN, SIZE, SIZE, 3), dtype=np.uint8))
  labels = jax.device_put(rng.integers(0, 10, NUM_TRAIN).astype(np.int32))
  cases = {}
  for name in [r for r in args.rules.split(",") if r]:
    valid = VARIANTS.get(name, ())
    for variant in [None] if name == "bp" else [v for v in args.variants.split(",") if v in valid]:
      cases[name if variant is None else f"{name}/{variant}"] = make_case(
        name, variant, seeds, args.steps, args.diagnostics
      )
  if "bp" not in cases:
    cases = {"bp": make_case("bp", None, seeds, args.steps, args.diagnostics), **cases}
  for name, fn in cases.items():
    t = time.perf_counter()
    fn(images, labels)
    print(f"  warm-up {name:16s} {time.perf_counter() - t:7.2f} s", flush=True)
  times = {name: [] for name in cases}
  for r in range(args.reps):
    for name, fn in cases.items():
      t = time.perf_counter()
      fn(images, labels)
      times[name].append((time.perf_counter() - t) / args.steps)
    print(
      f"  rep {r + 1}/{args.reps}: " + ", ".join(f"{k} {v[-1] * 1e3:.0f}" for k, v in times.items()) + " ms/step",
      flush=True,
    )
  med = {k: statistics.median(v) for k, v in times.items()}
  print("\nmedian s/step: " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
  for name in cases:
    if name != "bp":
      print(f"step_cost_vs_bp[{name}]={med[name] / med['bp']:.3f}")
  print(f"load avg at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  main()
