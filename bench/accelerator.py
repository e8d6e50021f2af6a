"""The accelerator check: one command that measures brainalign where it is meant to run fast.

    python bench/accelerator.py                 # one modern GPU: under 8 minutes
    python bench/accelerator.py --scale=tiny    # the same code in seconds on a CPU (run by the test suite)

Prints `name=value` lines (every device of the machine is used: the seed axis and the bootstrap resamples are
split over all of them, brainalign.devices):
  device, device_count                 what ran
  bp_step_ms_1seed, bp_step_ms_Sseeds  one BP step (batch 128) for 1 seed and for S seeds vmapped
  vmap_speedup                         S x (1-seed step) / (S-seed step): > 1 means vmapping seeds pays
  epoch_s_scan, epoch_s_python         one BP epoch of S seeds with the scanned and the Python-loop driver
  scan_speedup                         python / scan
  step_cost_vs_bp[<rule>]              fa, pc, stdp step time / BP step time (S seeds, their configs' variants)
  study_seconds                        the whole P3-shaped study on synthetic inputs of the real shapes: 5 rules x
                                       S seeds x E epochs x N images at 32 px, features of n stimuli at every
                                       evaluation resolution at every milestone, model RDMs, the RSA grid against
                                       3 subjects x 6 ROIs, a B-resample bootstrap of the whole grid
  study_<part>_seconds                 its parts (train, features, rdms, rsa, bootstrap)
  peak_device_memory_gb                the largest device memory in use (n/a where the backend does not report it)

Scales: full = the study (S = 5, E = 40, N = 8,000, milestones 0, 1, 2, 5, 10, 20, 30, 40, n = 720 at 32 and
224 px, B = 1,000); tiny = S = 2, E = 1, N = 64, n = 20 at 32 px, B = 4. Inputs are random (timings do not
depend on the values); every number comes from the library's own functions (the same ones pipeline.run calls).
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax
import jax.numpy as jnp
import numpy as np

from brainalign import devices, features, rsa, rule_run, stats, train
from brainalign.configs import common
from brainalign.data import training_sets
from brainalign.models import READOUT_LAYERS

SCALES = {
  "full": dict(
    seeds=5,
    epochs=40,
    num_train=8000,
    batch=128,
    milestones=(0, 1, 2, 5, 10, 20, 30, 40),
    stimuli=720,
    resolutions=(32, 224),
    resamples=1000,
    reps=5,
  ),
  "tiny": dict(
    seeds=2,
    epochs=2,
    num_train=64,
    batch=32,
    milestones=(0, 1, 2),
    stimuli=20,
    resolutions=(32, 48),
    resamples=4,
    reps=2,
  ),
}
RULES = ("random", "bp", "fa", "pc", "stdp")


def _config(scale: dict, seeds: int):
  c = common.base_config()
  c.seeds = tuple(range(seeds))
  c.train.num_epochs, c.train.batch_size, c.train.milestones = scale["epochs"], scale["batch"], scale["milestones"]
  c.data.num_train = scale["num_train"]
  common.set_schedule_epochs(c, scale["epochs"])
  return c


def _training(scale: dict, seeds: int, rng) -> training_sets.TrainingSet:
  n = scale["num_train"]
  images = rng.integers(0, 256, (seeds, n, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, (seeds, n)).astype(np.int32)
  test = rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8)
  return training_sets.TrainingSet(
    images,
    labels,
    test,
    rng.integers(0, 10, 100).astype(np.int32),
    np.full(3, 0.5, np.float32),
    np.full(3, 0.25, np.float32),
    "synthetic",
    subset="per_seed",
    seeds=tuple(range(seeds)),
  )


def _state(su: rule_run.RuleSetup, seeds: int):
  import functools

  create = functools.partial(train.create_train_state, model=su.model, rule=su.rule, image_shape=(32, 32, 3))
  init = jax.jit(jax.vmap(create), out_shardings=su.mesh.seeds)
  return init(devices.put(train.seed_key_data(range(seeds)), su.mesh.seeds))


def _timed(fn, reps: int) -> float:
  """Median seconds of fn() (which blocks) after one warm-up call."""
  fn()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def _step_time(config, name, training, seeds, reps) -> float:
  """Seconds of one training step of `name` for `seeds` seeds (the library's step, vmapped, jitted)."""
  mesh = devices.seed_mesh(seeds)
  su = rule_run.setup(config, name, training, mesh)
  step = train.make_train_step(
    su.model,
    su.rule,
    batch_size=config.train.batch_size,
    steps_per_epoch=su.steps_per_epoch,
    mean=training.mean,
    std=training.std,
    pad=4,
    flip=True,
  )
  vstep = jax.jit(
    jax.vmap(step, in_axes=(0, 0, 0)),
    in_shardings=(mesh.seeds, mesh.seeds, mesh.seeds),
    out_shardings=(mesh.seeds, mesh.seeds),
  )
  images = devices.put(training.train_images[:seeds], mesh.seeds)
  labels = devices.put(training.train_labels[:seeds], mesh.seeds)
  box = {"state": _state(su, seeds)}

  def one():
    box["state"], metrics = vstep(box["state"], images, labels)
    jax.block_until_ready(metrics)

  return _timed(one, reps)


def _epoch_time(config, training, seeds, driver, reps) -> float:
  mesh = devices.seed_mesh(seeds)
  config.train.epoch_driver = driver
  su = rule_run.setup(config, "bp", training, mesh)  # resolves the driver
  run = rule_run._epoch_runner(config, su, training)
  images, labels = devices.put(training.train_images, mesh.seeds), devices.put(training.train_labels, mesh.seeds)
  box = {"state": _state(su, seeds)}

  def one():
    box["state"], _ = run(box["state"], images, labels)

  return _timed(one, max(1, reps // 2))


def _study(config, scale, training, rng) -> dict:
  """The whole study on synthetic inputs; returns {part: seconds}."""
  seeds, n = len(config.seeds), scale["stimuli"]
  mesh = devices.seed_mesh(seeds)
  probe = {r: rng.normal(size=(n, r, r, 3)).astype(np.float32) for r in scale["resolutions"]}
  parts = dict.fromkeys(("train", "features", "rdms", "rsa", "bootstrap"), 0.0)
  vectors = {r: [] for r in scale["resolutions"]}
  config.train.epoch_driver = "auto"
  for name in RULES:
    su = rule_run.setup(config, name, training, mesh)
    state = _state(su, seeds)
    extract = features.make_extractor(
      su.model, bn_mode="running", batch_size=128, rule_features=su.rule.features, mesh=mesh.mesh
    )
    run = rule_run._epoch_runner(config, su, training) if su.rule.trains else None
    images, labels = devices.put(training.train_images, mesh.seeds), devices.put(training.train_labels, mesh.seeds)
    for epoch in range(su.num_epochs + 1):
      t = time.perf_counter()
      if epoch:
        state, _ = run(state, images, labels)
      parts["train"] += time.perf_counter() - t
      if epoch in su.milestones:
        for r, imgs in probe.items():
          t = time.perf_counter()
          f = extract(state.params, state.batch_stats, imgs, state.rule_state)
          parts["features"] += time.perf_counter() - t
          t = time.perf_counter()
          placed = [devices.put(f[layer][:, None], mesh.seeds) for layer in READOUT_LAYERS]
          vectors[r].append(np.asarray(devices.gather(rsa.model_rdms(placed, mesh=mesh.mesh))))  # [S, 1, L, P]
          parts["rdms"] += time.perf_counter() - t
  p = n * (n - 1) // 2
  brain = rng.random((3, 6, p)).astype(np.float32)
  for r in scale["resolutions"]:
    grid = np.concatenate(vectors[r], axis=1)  # [S, conditions, L, P]
    t = time.perf_counter()
    ranks = devices.put(np.asarray(rsa.rank_brain(jnp.asarray(brain))), mesh.replicated)
    jax.block_until_ready(rsa.spearman_at(devices.put(grid, mesh.seeds), ranks, np.arange(p), mesh=mesh.mesh))
    parts["rsa"] += time.perf_counter() - t
    t = time.perf_counter()
    resamples = stats.draw_resamples(jax.random.key(0), scale["resamples"], n)
    out = stats.bootstrap_rsa(
      grid.reshape(-1, p),
      brain,
      rsa.pair_indices(n),
      resamples,
      n=n,
      mean_rdm=True,
      mesh=devices.resample_mesh() if jax.device_count() > 1 else None,
    )
    jax.block_until_ready(out)
    parts["bootstrap"] += time.perf_counter() - t
  return parts


def _peak_memory() -> str:
  try:
    peaks = [d.memory_stats().get("peak_bytes_in_use", 0) for d in jax.local_devices()]
    return f"{max(peaks) / 2**30:.2f}"
  except Exception:  # the CPU backend reports no memory statistics
    return "n/a"


def main(argv=None) -> int:
  """Runs the check and prints its name=value lines."""
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--scale", choices=sorted(SCALES), default="full")
  ap.add_argument("--skip-study", action="store_true", help="only the step and epoch timings")
  args = ap.parse_args(argv)
  scale = SCALES[args.scale]
  rng = np.random.default_rng(0)
  seeds, reps = scale["seeds"], scale["reps"]
  config = _config(scale, seeds)
  training = _training(scale, seeds, rng)
  print(f"scale={args.scale}")
  print(f"device={jax.devices()[0].device_kind}")
  print(f"device_count={jax.device_count()}")
  t1 = _step_time(_config(scale, 1), "bp", _training(scale, 1, rng), 1, reps)
  ts = _step_time(config, "bp", training, seeds, reps)
  print(f"bp_step_ms_1seed={1e3 * t1:.3f}")
  print(f"bp_step_ms_{seeds}seeds={1e3 * ts:.3f}")
  print(f"vmap_speedup={seeds * t1 / ts:.3f}")
  scan, python = (_epoch_time(config, training, seeds, d, reps) for d in ("scan", "python"))
  print(f"epoch_s_scan={scan:.3f}")
  print(f"epoch_s_python={python:.3f}")
  print(f"scan_speedup={python / scan:.3f}")
  for name in ("fa", "pc", "stdp"):
    print(f"step_cost_vs_bp[{name}]={_step_time(config, name, training, seeds, reps) / ts:.3f}")
  if not args.skip_study:
    t = time.perf_counter()
    parts = _study(_config(scale, seeds), scale, training, rng)
    print(f"study_seconds={time.perf_counter() - t:.1f}")
    for part, seconds in parts.items():
      print(f"study_{part}_seconds={seconds:.1f}")
  print(f"peak_device_memory_gb={_peak_memory()}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
