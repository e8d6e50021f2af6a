"""Benchmark: the paper-size RSA grid with brainalign.rsa vs a SciPy loop vs rsatoolbox.

Grid: 720 stimuli; 5 seeds x 8 milestones x 4 layers (widths 32, 64, 128, 512) x 6 ROIs x
3 subjects, all 258,840 pairs. Inputs are random (fixed numpy seed): features, and brain RDMs
(`pdist(..., 'correlation')` of random 200-voxel patterns, stored as float32 vectors as a loader
would hand them over); both derive from a shared 20-d latent so rho is not ~0. All three methods
see the same float32 numbers.

  (a) brainalign: `rank_brain` once, then one jitted `rsa_grid` call for the whole grid
      (compile and warm call timed separately, `block_until_ready`).
  (b) the reference implementation's method: for every (seed, milestone, layer) one
      `scipy.spatial.distance.pdist(feat, 'correlation')`, then `scipy.stats.spearmanr(model, brain)`
      for every (ROI, subject): both vectors are re-ranked on every comparison.
  (c) rsatoolbox: `calc_rdm(Dataset(feat), method='correlation')` per (seed, milestone, layer),
      then `compare(model_rdm, brain_rdms, method='spearman')` against all 18 brain RDMs.
      Also reported, for information: rsatoolbox with all model RDMs in ONE compare call (each RDM
      ranked once, like brainalign).

(b) and (c) take minutes, so by default they run on the first `--fraction` of the 40
(seed, milestone) cells and are extrapolated linearly (each cell is the same work); the output
says so. `--fraction 1` runs everything.

  python bench/rsa.py [--fraction 0.1] [--reps 3]

The last line is `speedup_vs_scipy_loop=<ratio>` (warm brainalign call vs the extrapolated loop).
"""

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np
import scipy.stats
from scipy.spatial.distance import pdist

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax

from brainalign import rsa

N_STIMULI = 720
SEEDS, EPOCHS = 5, 8
WIDTHS = (32, 64, 128, 512)
ROIS, SUBJECTS = 6, 3
VOXELS = 200
LATENT = 20  # shared stimulus dimensions behind features and voxels


def make_inputs(seed):
  """Features [L] of [SEEDS, EPOCHS, n, d_l] float32 and brain vectors [S, R, P] float32.

  Features and voxel patterns are noisy random projections of one 20-d latent per stimulus, so the
  rho values are far from 0 (a stronger equality check than correlating pure noise).
  """
  rng = np.random.default_rng(seed)
  latent = rng.standard_normal((N_STIMULI, LATENT)).astype(np.float32)
  features = []
  for d in WIDTHS:
    proj = rng.standard_normal((SEEDS, EPOCHS, LATENT, d), dtype=np.float32)
    noise = rng.standard_normal((SEEDS, EPOCHS, N_STIMULI, d), dtype=np.float32)
    features.append(np.einsum("nk,sekd->send", latent, proj) + 3.0 * noise)
  proj = rng.standard_normal((SUBJECTS, ROIS, LATENT, VOXELS))
  voxels = np.einsum("nk,srkv->srnv", latent, proj) + 5.0 * rng.standard_normal((SUBJECTS, ROIS, N_STIMULI, VOXELS))
  brain = np.stack([[pdist(voxels[s, r], "correlation") for r in range(ROIS)] for s in range(SUBJECTS)])
  return features, brain.astype(np.float32)


def time_brainalign(features, brain, reps):
  """(a): returns rho [SEEDS, EPOCHS, L, R, S] and a dict of timings (s)."""
  pairs = tuple(jax.device_put(p) for p in rsa.pair_indices(N_STIMULI))
  feats = [jax.device_put(f) for f in features]
  brain_d = jax.device_put(brain)
  t = time.perf_counter()
  ranks = rsa.rank_brain(brain_d).block_until_ready()
  rank_first = time.perf_counter() - t
  t = time.perf_counter()
  ranks = rsa.rank_brain(brain_d).block_until_ready()
  rank_warm = time.perf_counter() - t
  compile_events = []  # trace + lowering + XLA compile durations reported by JAX during the first call
  jax.monitoring.register_event_duration_secs_listener(
    lambda event, secs, **_: compile_events.append(secs) if event.startswith("/jax/core/compile/") else None
  )
  t = time.perf_counter()
  rho = rsa.rsa_grid(feats, ranks, pairs).block_until_ready()
  first = time.perf_counter() - t
  compile_secs = sum(compile_events)
  warm, warm_cpu = [], []
  for _ in range(reps):
    t, c = time.perf_counter(), time.process_time()
    rho = rsa.rsa_grid(feats, ranks, pairs).block_until_ready()
    warm.append(time.perf_counter() - t)
    warm_cpu.append(time.process_time() - c)
  times = dict(
    rank_brain_first=rank_first,
    rank_brain_warm=rank_warm,
    first_call=first,
    compile=compile_secs,
    warm_median=float(np.median(warm)),
    warm_min=min(warm),
    warm_cpu_median=float(np.median(warm_cpu)),
  )
  return np.asarray(jax.device_get(rho)), times


def cells(k):
  """The first k (seed, epoch) cells in row-major order."""
  return [divmod(c, EPOCHS) for c in range(k)]


def time_scipy_loop(features, brain, k):
  """(b): rho [k, L, R, S] for the first k cells, and the wall and CPU time taken (s)."""
  brain64 = brain.astype(np.float64)
  out = np.empty((k, len(WIDTHS), ROIS, SUBJECTS))
  t, cpu = time.perf_counter(), time.process_time()
  for c, (s_, e) in enumerate(cells(k)):
    for l, f in enumerate(features):
      model = pdist(f[s_, e], "correlation")
      for r in range(ROIS):
        for s in range(SUBJECTS):
          out[c, l, r, s] = scipy.stats.spearmanr(model, brain64[s, r]).statistic
  return out, time.perf_counter() - t, time.process_time() - cpu


def time_rsatoolbox(features, brain, k, batched):
  """(c): rho [k, L, R, S] for the first k cells via rsatoolbox, and the time taken (s)."""
  import rsatoolbox

  out = np.empty((k, len(WIDTHS), ROIS, SUBJECTS))
  t = time.perf_counter()
  brain_rdms = rsatoolbox.rdm.RDMs(
    brain.reshape(SUBJECTS * ROIS, -1).astype(np.float64), dissimilarity_measure="correlation"
  )  # row = s * ROIS + r
  models = []
  for c, (s_, e) in enumerate(cells(k)):
    for l, f in enumerate(features):
      model = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(f[s_, e].astype(np.float64)), method="correlation")
      if batched:
        models.append(model)
      else:
        rho = rsatoolbox.rdm.compare(model, brain_rdms, method="spearman")  # [1, S * R]
        out[c, l] = rho.reshape(SUBJECTS, ROIS).T
  if batched:
    rho = rsatoolbox.rdm.compare(rsatoolbox.rdm.concat(models), brain_rdms, method="spearman")
    out[:] = rho.reshape(k, len(WIDTHS), SUBJECTS, ROIS).transpose(0, 1, 3, 2)
  return out, time.perf_counter() - t


def cpu_model():
  """lscpu's model name, or platform.processor() as a fallback."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--fraction",
    type=float,
    default=0.1,
    help="share of the 40 (seed, epoch) cells timed for the SciPy/rsatoolbox loops (extrapolated)",
  )
  parser.add_argument("--reps", type=int, default=3, help="warm brainalign calls (median reported)")
  parser.add_argument("--seed", type=int, default=0, help="numpy seed of the random inputs")
  parser.add_argument("--skip-rsatoolbox", action="store_true")
  args = parser.parse_args()

  n_cells = SEEDS * EPOCHS
  k = min(n_cells, max(1, round(args.fraction * n_cells)))
  scale = n_cells / k
  pairs = N_STIMULI * (N_STIMULI - 1) // 2
  print(f"date={datetime.datetime.now().isoformat(timespec='seconds')}")
  print(f"machine={cpu_model()} cpus={os.cpu_count()} load_avg_1min={os.getloadavg()[0]:.2f}")
  print(f"jax={jax.__version__} backend={jax.default_backend()} numpy={np.__version__} scipy={scipy.__version__}")
  print(
    f"grid: n={N_STIMULI} pairs={pairs} seeds={SEEDS} epochs={EPOCHS} widths={WIDTHS} rois={ROIS} "
    f"subjects={SUBJECTS} -> {n_cells * len(WIDTHS) * ROIS * SUBJECTS} rho values"
  )

  features, brain = make_inputs(args.seed)

  rho_a, t_a = time_brainalign(features, brain, args.reps)
  print(
    f"(a) brainalign: rank_brain first={t_a['rank_brain_first']:.3f}s warm={t_a['rank_brain_warm']:.3f}s (once per "
    f"brain); rsa_grid first call={t_a['first_call']:.2f}s (trace+compile {t_a['compile']:.2f}s), warm "
    f"median={t_a['warm_median']:.3f}s min={t_a['warm_min']:.3f}s over {args.reps} calls"
  )
  sub_a = rho_a.reshape(n_cells, *rho_a.shape[2:])[:k]  # [k, L, R, S]
  n_nan = int(np.isnan(rho_a).sum())
  print(f"(a) rho shape={rho_a.shape} nan={n_nan} range=[{np.nanmin(rho_a):.4f}, {np.nanmax(rho_a):.4f}]")

  note = "" if k == n_cells else f" (measured on {k}/{n_cells} (seed, epoch) cells, extrapolated x{scale:g})"
  rho_b, t_b, cpu_b = time_scipy_loop(features, brain, k)
  full_b = t_b * scale
  print(f"(b) scipy loop: {t_b:.2f}s measured (CPU {cpu_b:.2f}s) -> {full_b:.1f}s full grid{note}")
  print(f"max_abs_diff(a, b)={np.max(np.abs(sub_a - rho_b)):.2e}")

  speedup_tbx = None
  if args.skip_rsatoolbox:
    print("(c) rsatoolbox: skipped (--skip-rsatoolbox)")
  else:
    try:
      import rsatoolbox  # noqa: F401
    except ImportError:
      print('(c) rsatoolbox: not installed, skipped (pip install -e ".[bench]")')
    else:
      rho_c, t_c = time_rsatoolbox(features, brain, k, batched=False)
      full_c = t_c * scale
      print(
        f"(c) rsatoolbox, compare(model_rdm, brain_rdms) per model: {t_c:.2f}s measured -> "
        f"{full_c:.1f}s full grid{note}"
      )
      print(
        f"max_abs_diff(a, c)={np.max(np.abs(sub_a - rho_c)):.2e} max_abs_diff(b, c)={np.max(np.abs(rho_b - rho_c)):.2e}"
      )
      rho_cb, t_cb = time_rsatoolbox(features, brain, k, batched=True)
      full_cb = t_cb * scale
      print(
        f"(c') rsatoolbox, all model RDMs in one compare call (each ranked once): {t_cb:.2f}s measured -> "
        f"{full_cb:.1f}s full grid{note}; max_abs_diff(a, c')={np.max(np.abs(sub_a - rho_cb)):.2e}"
      )
      speedup_tbx = full_c / t_a["warm_median"]
      print(f"speedup_vs_rsatoolbox_one_call={full_cb / t_a['warm_median']:.1f}")

  warm_plus_brain = t_a["warm_median"] + t_a["rank_brain_warm"]
  print(f"speedup_vs_scipy_loop_incl_rank_brain={full_b / warm_plus_brain:.1f}")
  # CPU time is less sensitive to other processes on a shared machine than wall time.
  print(
    f"cpu_time_ratio_vs_scipy_loop={cpu_b * scale / t_a['warm_cpu_median']:.1f} "
    f"(brainalign warm call used {t_a['warm_cpu_median']:.2f}s CPU for {t_a['warm_median']:.2f}s wall)"
  )
  if speedup_tbx is not None:
    print(f"speedup_vs_rsatoolbox={speedup_tbx:.1f}")
  print(f"speedup_vs_scipy_loop={full_b / t_a['warm_median']:.1f}")


if __name__ == "__main__":
  main()
