"""Benchmark: the stimulus bootstrap of the full paper-size grid, brainalign.stats vs rsatoolbox's loop.

Grid: 720 stimuli (all 258,840 pairs); 5 seeds x 8 milestones x 4 layers = 160 model RDMs x 6 ROIs x
3 subjects; Spearman; 1,000 stimulus resamples; the noise ceiling (lower and upper bound per ROI) on every
resample. Inputs are random (fixed NumPy seed): RDM vectors that share a latent, float32.

  (a) brainalign: `stats.bootstrap_rsa` = ONE compiled call over all resamples, conditions, ROIs and
      subjects (compile and warm call timed separately, `block_until_ready`).
  (b) rsatoolbox 0.3.2: `eval_bootstrap_pattern(models, data, method='spearman', N)` per ROI, with the 160
      model RDMs as `ModelFixed` models and the ROI's 3 subject RDMs as data: a Python loop over resamples
      that subsamples every RDM, compares, and recomputes the noise ceiling (its default). Same work.

(b) would take hours, so it runs `--rsa-samples` resamples for ONE ROI and is extrapolated linearly to
6 ROIs x 1,000 resamples (every resample is the same work); the output says so. `--samples` below 1,000
runs (a) twice, with `--samples` and a quarter of it, and extrapolates the straight line through both
(one-time work, e.g. the per-vector sort of the rank plan, counted once, not x1000/samples); both runs
use the ranking of a 1,000-resample call (`rank_plan=True`). The default runs the full 1,000 in one call.

  python bench/stats.py [--samples 1000] [--rsa-samples 2]

The last line is `speedup_vs_rsatoolbox=<ratio>` (brainalign's 1,000 resamples vs extrapolated rsatoolbox).
"""

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax

from brainalign import rsa, stats

N_STIMULI = 720
MODELS = 5 * 8 * 4  # seeds x milestones x layers
ROIS, SUBJECTS = 6, 3
FULL_SAMPLES = 1000


def make_inputs(seed):
  """Model vectors [160, P] and brain vectors [3, 6, P], float32, sharing a latent so rho is not ~0."""
  rng = np.random.default_rng(seed)
  p = N_STIMULI * (N_STIMULI - 1) // 2
  latent = rng.standard_normal(p).astype(np.float32)
  model = 0.3 * latent + rng.standard_normal((MODELS, p), dtype=np.float32)
  brain = 0.3 * latent + rng.standard_normal((SUBJECTS, ROIS, p), dtype=np.float32)
  return model, brain


def time_brainalign(model, brain, samples, warm_call=True):
  """(a): one compiled call with `samples` resamples, ranked as a 1,000-resample call is; returns the first
  (compile + run) and, if warm_call, the warm timing (s; else None) and the output."""
  pairs = tuple(jax.device_put(a) for a in rsa.pair_indices(N_STIMULI))
  resamples = stats.draw_resamples(jax.random.key(20261002), samples, N_STIMULI)
  model_d, brain_d = jax.device_put(model), jax.device_put(brain)
  plan = FULL_SAMPLES >= stats.PLAN_MIN_RESAMPLES
  t = time.perf_counter()
  out = stats.bootstrap_rsa(model_d, brain_d, pairs, resamples, n=N_STIMULI, rank_plan=plan)
  jax.block_until_ready(out)
  first = time.perf_counter() - t
  if not warm_call:
    return first, None, out
  t = time.perf_counter()
  out = stats.bootstrap_rsa(model_d, brain_d, pairs, resamples, n=N_STIMULI, rank_plan=plan)
  jax.block_until_ready(out)
  warm = time.perf_counter() - t
  return first, warm, out


def time_rsatoolbox(model, brain, samples):
  """(b) for ONE ROI: eval_bootstrap_pattern with 160 fixed models; returns seconds."""
  from rsatoolbox.inference import eval_bootstrap_pattern
  from rsatoolbox.model import ModelFixed
  from rsatoolbox.rdm import RDMs

  models = [ModelFixed(f"m{k}", RDMs(model[k : k + 1].astype(np.float64))) for k in range(len(model))]
  data = RDMs(brain[:, 0].astype(np.float64))
  np.random.seed(0)
  t = time.perf_counter()
  eval_bootstrap_pattern(models, data, method="spearman", N=samples)
  return time.perf_counter() - t


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument(
    "--samples",
    type=int,
    default=FULL_SAMPLES,
    help="brainalign resamples; below 1,000: two calls, extrapolated to 1,000 (stated)",
  )
  ap.add_argument(
    "--rsa-samples",
    type=int,
    default=2,
    help="rsatoolbox resamples for one ROI (extrapolated); 0 skips rsatoolbox (no ratio)",
  )
  args = ap.parse_args()
  print(
    f"date {datetime.date.today()}  machine {platform.machine()} {platform.processor() or ''}  "
    f"cpus {os.cpu_count()}  jax {jax.__version__} backend {jax.default_backend()}"
  )
  print(
    f"grid: {N_STIMULI} stimuli ({N_STIMULI * (N_STIMULI - 1) // 2} pairs), {MODELS} model RDMs x {ROIS} ROIs x "
    f"{SUBJECTS} subjects, spearman, noise ceiling on every resample"
  )
  model, brain = make_inputs(0)
  if args.samples >= FULL_SAMPLES:  # one call, compile included (conservative: compiling takes ~10-60 s)
    first, _, out = time_brainalign(model, brain, args.samples, warm_call=False)
    ours = first * FULL_SAMPLES / args.samples
    print(
      f"brainalign: {first:.1f} s for {args.samples} resamples in ONE call, compile included; "
      f"rho grid {tuple(out['rho'].shape)}"
    )
  else:
    first, warm, out = time_brainalign(model, brain, args.samples)
    small = max(1, args.samples // 4)
    _, warm_small, _ = time_brainalign(model, brain, small)
    per = (warm - warm_small) / (args.samples - small)
    fixed = max(warm - per * args.samples, 0.0)
    ours = fixed + per * FULL_SAMPLES
    print(
      f"brainalign: first call (compile + run) {first:.1f} s; warm calls {warm_small:.1f} s ({small} "
      f"resamples) and {warm:.1f} s ({args.samples}) -> {per:.2f} s per resample + {fixed:.1f} s once -> "
      f"{ours:.0f} s for {FULL_SAMPLES} resamples (extrapolated; run without --samples for the full call); "
      f"rho grid {tuple(out['rho'].shape)}"
    )
  if args.rsa_samples <= 0:
    print("rsatoolbox skipped (--rsa-samples 0)")
    print("speedup_vs_rsatoolbox=n/a")
    return
  t_rsa = time_rsatoolbox(model, brain, args.rsa_samples)
  theirs = t_rsa * ROIS * FULL_SAMPLES / args.rsa_samples
  print(
    f"rsatoolbox eval_bootstrap_pattern: {t_rsa:.1f} s for {args.rsa_samples} resamples of 1 ROI -> "
    f"{theirs:.0f} s ({theirs / 3600:.1f} h) extrapolated to {ROIS} ROIs x {FULL_SAMPLES} resamples"
  )
  print(f"speedup_vs_rsatoolbox={theirs / ours:.1f}")


if __name__ == "__main__":
  main()
