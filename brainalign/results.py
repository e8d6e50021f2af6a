"""Tidy result tables.

alignment.csv: one row per (data, rule, seed, epoch, layer, roi, subject, resolution, pairs) with `rho`
    (Spearman between the model RDM and that subject's ROI RDM), plus bn_mode and n_pairs.
training.csv: one row per (rule, seed, epoch): loss and train accuracy (means over the epoch's training
    batches, in training mode with augmentation) and test accuracy (held-out images, inference mode).
diagnostics.csv: one row per (rule, seed, epoch, metric) with `value`: the learning rules' own diagnostics
    (FA: `angle_fa_vs_bp_<layer>`, `angle_w_vs_b_<layer>` in degrees; PC: `energy_stepTT` per inference step,
    `cos_pc_vs_bp_<layer>`), the angles/cosines measured on the last training batch of the epoch.
summary.csv: per (data, rule, epoch, layer, roi, resolution, pairs, bn_mode) the mean and SD over seeds of
    the subject-mean rho; layer "best" is the per-seed maximum over layers of the subject-mean rho (P3's
    convention, docs/methods.md §9.4), then mean and SD over seeds.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd

ALIGNMENT_COLUMNS = (
  "data",
  "rule",
  "seed",
  "epoch",
  "layer",
  "roi",
  "subject",
  "resolution",
  "pairs",
  "bn_mode",
  "n_pairs",
  "rho",
)
TRAINING_COLUMNS = ("data", "train_data", "rule", "seed", "epoch", "loss", "train_accuracy", "test_accuracy")
DIAGNOSTICS_COLUMNS = ("data", "rule", "seed", "epoch", "metric", "value")
SUMMARY_COLUMNS = (
  "data",
  "rule",
  "epoch",
  "layer",
  "roi",
  "resolution",
  "pairs",
  "bn_mode",
  "n_seeds",
  "rho_mean",
  "rho_sd",
)
BEST_LAYER = "best"


def alignment_frame(
  rho: np.ndarray,
  *,
  data: str,
  rule: str,
  seeds: Sequence[int],
  epochs: Sequence[int],
  layers: Sequence[str],
  rois: Sequence[str],
  subjects: Sequence[str],
  resolution: int,
  pairs: str,
  bn_mode: str,
  n_pairs: int,
) -> pd.DataFrame:
  """Flattens rho [S, M, L, R, Subj] into tidy rows (C order over the five axes)."""
  expected = (len(seeds), len(epochs), len(layers), len(rois), len(subjects))
  if rho.shape != expected:
    raise ValueError(f"rho has shape {rho.shape}, expected {expected} (seeds, epochs, layers, rois, subjects)")
  grid = np.meshgrid(
    np.arange(expected[0]),
    np.arange(expected[1]),
    np.arange(expected[2]),
    np.arange(expected[3]),
    np.arange(expected[4]),
    indexing="ij",
  )
  s, m, l, r, j = (g.ravel() for g in grid)
  n = rho.size
  return pd.DataFrame(
    {
      "data": [data] * n,
      "rule": [rule] * n,
      "seed": np.asarray(seeds)[s],
      "epoch": np.asarray(epochs)[m],
      "layer": np.asarray(layers, dtype=object)[l],
      "roi": np.asarray(rois, dtype=object)[r],
      "subject": np.asarray(subjects, dtype=object)[j],
      "resolution": resolution,
      "pairs": pairs,
      "bn_mode": bn_mode,
      "n_pairs": n_pairs,
      "rho": rho.ravel().astype(np.float64),
    }
  )


def summarize(alignment: pd.DataFrame) -> pd.DataFrame:
  """Mean and SD (ddof=1) over seeds of the subject-mean rho, per layer and for the per-seed best layer."""
  keys = ["data", "rule", "epoch", "roi", "resolution", "pairs", "bn_mode"]
  per_seed = alignment.groupby(keys + ["layer", "seed"], sort=False)["rho"].mean().reset_index()
  best = per_seed.groupby(keys + ["seed"], sort=False)["rho"].max().reset_index()
  best["layer"] = BEST_LAYER
  both = pd.concat([per_seed, best], ignore_index=True)
  out = (
    both.groupby(keys + ["layer"], sort=False)["rho"]
    .agg(n_seeds="count", rho_mean="mean", rho_sd=lambda x: x.std(ddof=1) if len(x) > 1 else np.nan)
    .reset_index()
  )
  # sort by each column's order of first appearance (the config's order of rules, ROIs and layers)
  order = ["rule", "resolution", "pairs", "roi", "layer", "epoch"]
  first_seen = {c: {v: k for k, v in enumerate(pd.unique(both[c]))} for c in order}
  out = out.sort_values(order, key=lambda col: col.map(first_seen[col.name]), kind="stable")
  return out[list(SUMMARY_COLUMNS)].reset_index(drop=True)
