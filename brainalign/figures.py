"""Figures in plain matplotlib, readable in print: labelled axes, legend, a colour-blind-safe palette.

alignment_vs_epoch: one panel per ROI; rho (mean over subjects, then mean ± SD over seeds) against epoch for
every rule, solid = best layer per seed (P3's convention), dashed = conv1; symlog x axis (epoch 0 visible).
An untrained rule (evaluated at epoch 0 only) is drawn as a dotted horizontal line across all epochs.
The data source is written in the title: simulated results are never shown as real ones.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from brainalign import io, results

# Okabe & Ito (2008) colour-blind-safe palette
PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")


def alignment_vs_epoch(
  summary: pd.DataFrame, path: str | os.PathLike, *, resolution: int, pairs: str, title: str
) -> None:
  """Writes the figure for one evaluation resolution and pair set (PNG, atomically)."""
  df = summary[(summary.resolution == resolution) & (summary.pairs == pairs)]
  rois = list(dict.fromkeys(df.roi))
  rules = list(dict.fromkeys(df.rule))
  epochs_all = sorted(df.epoch.unique())
  ncol = min(3, len(rois))
  nrow = int(np.ceil(len(rois) / ncol))
  fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False, sharex=True)
  for ax, roi in zip(axes.ravel(), rois):
    for k, rule in enumerate(rules):
      colour = PALETTE[k % len(PALETTE)]
      for layer, style in ((results.BEST_LAYER, "-"), ("conv1", "--")):
        d = df[(df.roi == roi) & (df.rule == rule) & (df.layer == layer)].sort_values("epoch")
        if d.empty:
          continue
        label = f"{rule} ({'best layer' if layer == results.BEST_LAYER else layer})"
        sd = d.rho_sd.fillna(0).to_numpy()
        if len(d) == 1 and len(epochs_all) > 1:  # untrained: one value, drawn across the x range
          y = float(d.rho_mean.iloc[0])
          ax.axhline(y, color=colour, ls=":" if layer == results.BEST_LAYER else "-.", lw=1.5, label=label)
          continue
        x, y = d.epoch.to_numpy(), d.rho_mean.to_numpy()
        ax.plot(x, y, style, color=colour, marker="o", ms=3, lw=1.5, label=label)
        ax.fill_between(x, y - sd, y + sd, color=colour, alpha=0.15, lw=0)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(epochs_all)
    ax.set_xticklabels([str(e) for e in epochs_all])
    ax.set_title(roi)
    ax.set_xlabel("epoch")
    ax.set_ylabel("Spearman ρ (model vs brain RDM)")
  for ax in axes.ravel()[len(rois) :]:
    ax.axis("off")
  handles, labels = axes.ravel()[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), frameon=False, fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) // 4), 1, 0.95))
  with io.atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=130, format="png")
  plt.close(fig)
