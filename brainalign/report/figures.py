"""The report's figures, drawn from a section's tables (and, for the RDM heatmaps, the run's stored RDMs).

Per section (file names of non-primary sections end in `_<res>px_<pairs>`): `trajectory_<ROI>.png` for the
first ROI (V1 when the data have it: the study's headline), `all_rois.png`, `delta_r.png`; for the primary
section also `rdms.png`. Every title names the data source (never a fixed data-set name).
"""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from brainalign import io, rsa
from brainalign.figures import PALETTE
from brainalign.report.section import Section


def _epoch_axis(ax, epochs: list, ylabel: str) -> None:
  ax.axhline(0, color="0.5", lw=0.8)
  ax.set_xscale("symlog", linthresh=1)
  ax.set_xticks(epochs)
  ax.set_xticklabels([str(e) for e in epochs])
  ax.set_xlabel("epoch")
  ax.set_ylabel(ylabel)


def _trajectory_axes(
  ax, sec: Section, traj: pd.DataFrame, nc: pd.DataFrame, roi: str, colours: dict, kinds, comparator: str
) -> None:
  for rule in sec.rules:
    for kind, style in zip(kinds, ("-", "--")):
      d = traj[(traj.rule == rule) & (traj.roi == roi) & (traj.layer_kind == kind)].sort_values("epoch")
      if d.empty:
        continue
      label = f"{rule} ({d.layer.iloc[0] if kind == 'fixed' else 'best'} layer)"
      if len(d) == 1 and len(sec.epochs) > 1:  # untrained: one value, drawn across the x range
        ax.axhline(d.rho.iloc[0], color=colours[rule], ls=":", lw=1.5, label=label + ", untrained")
        ax.axhspan(d.ci_low.iloc[0], d.ci_high.iloc[0], color=colours[rule], alpha=0.08, lw=0)
        continue
      ax.plot(d.epoch, d.rho, style, marker="o", ms=3, color=colours[rule], label=label)
      ax.fill_between(d.epoch, d.ci_low, d.ci_high, color=colours[rule], alpha=0.15, lw=0)
  row = nc.set_index("roi").loc[roi]
  if np.isfinite(row.lower_value):  # the upper bound (~0.6 at 3 subjects) is uninformative: table only
    ax.axhspan(row.lower_ci_low, row.lower_ci_high, color="0.9", zorder=0, lw=0)
    ax.axhline(row.lower_value, color="0.4", ls="--", lw=1, zorder=0, label="noise ceiling, lower bound (band: CI)")
  _epoch_axis(ax, sec.epochs, f"{comparator} ρ (model vs brain RDM)")
  ax.set_title(roi)


def _grid_of_axes(n: int):
  ncol = min(3, n)
  nrow = -(-n // ncol)
  fig, axes = plt.subplots(nrow, ncol, figsize=(4.3 * ncol, 3.4 * nrow), squeeze=False)
  for ax in axes.ravel()[n:]:
    ax.axis("off")
  return fig, axes.ravel()


def _save(fig, folder: pathlib.Path, name: str, written: list) -> None:
  with io.atomic_path(folder / name) as tmp:
    fig.savefig(tmp, dpi=130, format="png")
  plt.close(fig)
  written.append(name)


def _legend_below(fig, ax) -> None:
  h, labels = ax.get_legend_handles_labels()
  if labels:
    fig.legend(h, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False, fontsize=8)
  fig.tight_layout(rect=(0, 0.07, 1, 0.93))


def _delta_axes(ax, sec: Section, dr: pd.DataFrame, roi: str, colours: dict) -> None:
  for rule in sec.rules if len(dr) else ():
    d = dr[(dr.rule == rule) & (dr.roi == roi)].sort_values("epoch")
    if d.empty:
      continue
    x = np.concatenate([[0], d.epoch])
    ax.plot(x, np.concatenate([[0], d.delta_r]), marker="o", ms=3, color=colours[rule], label=rule)
    ax.fill_between(
      x, np.concatenate([[0], d.ci_low]), np.concatenate([[0], d.ci_high]), color=colours[rule], alpha=0.15, lw=0
    )
  _epoch_axis(ax, sec.epochs, "Δρ relative to epoch 0")
  ax.set_title(roi)


def _heatmaps(sec: Section, probe, folder: pathlib.Path, title: str, written: list) -> None:
  """Rank-transformed RDMs: each rule's first seed in conv1 at the heatmap epoch, and each ROI's subject mean."""
  n = sec.n_stimuli
  i, j = rsa.pair_indices(n)
  panels = [(f"{rule}, epoch {epoch}, {layer}", vec) for (rule, epoch, layer), vec in sec.heatmap_vectors.items()]
  panels += [(f"brain {roi} (subject mean)", probe.brain.rdm_vectors[:, r].mean(0)) for r, roi in enumerate(sec.rois)]
  fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9), squeeze=False)
  for ax, (name, vec) in zip(axes[0], panels):
    m = np.zeros((n, n))
    ranks = np.asarray(rsa.average_ranks(np.asarray(vec, np.float32))) / len(vec)  # percentile for display
    m[i, j] = ranks
    m[j, i] = ranks
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1)
    ax.set_title(name, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("stimulus")
  fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="dissimilarity (percentile)")
  fig.suptitle(f"{title}: RDMs, rank-transformed", fontsize=9)
  _save(fig, folder, "rdms.png", written)


def draw(
  sec: Section, tables: dict, s, probe, folder: pathlib.Path, title: str, suffix: str, heatmaps: bool
) -> list[str]:
  """Writes one section's figures into `folder`; returns their file names."""
  colours = {r: PALETTE[k % len(PALETTE)] for k, r in enumerate(sec.rules)}
  traj, nc, written = tables["trajectory"], tables["noise_ceiling"], []
  ci_pct = int(round(100 * float(s.ci)))
  first = "V1" if "V1" in sec.rois else sec.rois[0]
  fig, ax = plt.subplots(figsize=(6, 4.2))
  _trajectory_axes(ax, sec, traj, nc, first, colours, ("fixed", "best"), s.comparator)
  ax.legend(fontsize=7, frameon=False)
  fig.suptitle(f"{title}\n{first} alignment across training, {ci_pct}% stimulus-bootstrap CI", fontsize=9)
  fig.tight_layout()
  _save(fig, folder, f"trajectory_{first}{suffix}.png", written)

  fig, axes = _grid_of_axes(len(sec.rois))
  for ax, roi in zip(axes, sec.rois):
    _trajectory_axes(ax, sec, traj, nc, roi, colours, ("fixed",), s.comparator)
  fig.suptitle(f"{title}\nROI's layer, {ci_pct}% CI; grey = noise ceiling lower bound", fontsize=9)
  _legend_below(fig, axes[0])
  _save(fig, folder, f"all_rois{suffix}.png", written)

  fig, axes = _grid_of_axes(len(sec.rois))
  for ax, roi in zip(axes, sec.rois):
    _delta_axes(ax, sec, tables["delta_r"], roi, colours)
  fig.suptitle(f"{title}\nchange from the initialised network (ROI's layer), {ci_pct}% CI", fontsize=9)
  _legend_below(fig, axes[0])
  _save(fig, folder, f"delta_r{suffix}.png", written)
  if heatmaps:
    _heatmaps(sec, probe, folder, title, written)
  return written
