"""``SIMULATED.md``, the note next to the simulated files: what they are, the config, and the measured
between-subject RDM agreement (``between_subject_agreement``, by the loader's recipe).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.stats

from brainalign.data.simulate_config import COLUMN_TO_ROI, SUBJECTS, SimulationConfig
from brainalign.data.simulate_trials import exemplar_for_session

__all__ = ["between_subject_agreement", "note_text"]


def between_subject_agreement(designs, voxmetas, responses, config: SimulationConfig, first_names: set[str]):
  """Spearman rho between subjects' exemplar-01 RDMs per ROI, by the loader's recipe (§8):
  z-score voxels over all trials, take the exemplar-01 trials in concept order, 1 - Pearson.

  Returns {roi: {(a, b): rho}} for subject pairs (0, 1), (0, 2), (1, 2).
  """
  cols = {}
  for col, _ in config.roi_sizes:
    cols.setdefault(COLUMN_TO_ROI[col], []).append(col)
  rdms = {}
  for s, (design, voxmeta, resp) in enumerate(zip(designs, voxmetas, responses)):
    sel = design[(design["trial_type"] == "train") & design["stimulus"].isin(first_names)].sort_values("concept")
    for roi, roi_cols in cols.items():
      rows = np.flatnonzero(voxmeta[list(roi_cols)].to_numpy().any(axis=1))
      x = resp[rows]
      z = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
      pat = z[:, sel["trial_id"].to_numpy()].T
      pat = pat - pat.mean(axis=1, keepdims=True)
      pat /= np.linalg.norm(pat, axis=1, keepdims=True)
      iu = np.triu_indices(len(sel), k=1)
      rdms[s, roi] = scipy.stats.rankdata(1.0 - (pat @ pat.T)[iu])
  return {
    roi: {(a, b): float(np.corrcoef(rdms[a, roi], rdms[b, roi])[0, 1]) for a, b in ((0, 1), (0, 2), (1, 2))}
    for roi in cols
  }


_GROUND_TRUTH = (
  "## Ground truth (summary)",
  "",
  "* V1: Gabor energy (8 orientations x 2 spatial frequencies, quadrature pairs), energy ** 0.25, "
  "sampled every 2 px; voxels = positive mixtures of units within ~1.5 px of a random centre.",
  "* V2 / V3 / hV4: the V1 maps pooled over 2 / 4 px (V3 + orientation-opponent channels; hV4: "
  "max over 12-px windows + corner channels); voxel pooling sd 3 / 5 / 8 px.",
  "* LOC: silhouette shape (moments, 8 x 8 outline, low-frequency Fourier moduli) 60 % + category "
  "40 %; IT: category 85 % + shape 15 %; random signed voxel weights.",
  "* Trial = response_scale * (voxel baseline + ROI signal + noise_sd[subject] * N(0, 1) + "
  "run_offset_sd * (pattern shared by the trials of one (session, run))).",
  "* Exemplars other than 01 and the test images: flipped / shifted / gamma- and "
  "contrast-changed copies of the concept's image.",
  "",
)


def _intro_lines(n_concepts: int, test_concepts, default_names: bool) -> list[str]:
  import brainalign

  return [
    "# SIMULATED DATA: not THINGS-fMRI",
    "",
    "These files have the exact layout of the THINGS-fMRI single-trial `betas_csv` release "
    "(Hebart et al. 2023), but every response value is **simulated** from a known ground-truth "
    "encoding model. They say nothing about real brains.",
    "",
    f"* Generator: `brainalign.data.simulate.simulate_things_fmri` (brainalign "
    f"{brainalign.__version__}); the model is documented in that module's docstring.",
    f"* Concepts: {n_concepts} (one exemplar-01 image each, as given); test concepts "
    f"({len(test_concepts)}): {', '.join(test_concepts)}.",
    f"* Stimulus names: {'default_stimulus_name' if default_names else 'a custom stimulus_name'}.",
    "",
  ]


def _config_lines(config: SimulationConfig) -> list[str]:
  return [
    "## Config",
    "",
    "```python",
    *(f"{f.name} = {getattr(config, f.name)!r}" for f in dataclasses.fields(config)),
    "```",
    "",
  ]


def _subject_lines(config: SimulationConfig, designs, voxmetas) -> list[str]:
  lines = [
    "## Subjects",
    "",
    "| subject | trials | voxels | session -> exemplar | session of _01 | noise_sd |",
    "|---|---|---|---|---|---|",
  ]
  for s, (design, voxmeta) in enumerate(zip(designs, voxmetas)):
    ex = exemplar_for_session(s, config)
    lines.append(
      f"| {SUBJECTS[s]} | {len(design)} | {len(voxmeta)} | "
      f"{', '.join(f'{k + 1}->{e:02d}' for k, e in enumerate(ex))} | {ex.index(1) + 1} | "
      f"{config.noise_sd[s]} |"
    )
  lines += [
    "",
    "sub-01 and sub-02 share the presentation order (same order seed); sub-03 has its own.",
    "",
  ]
  return lines


def _agreement_lines(agreement) -> list[str]:
  lines = [
    "## Between-subject RDM agreement (Spearman rho, all exemplar-01 pairs)",
    "",
    "| ROI | sub-01 vs sub-02 | sub-01 vs sub-03 | sub-02 vs sub-03 |",
    "|---|---|---|---|",
  ]
  for roi, pairs in agreement.items():
    lines.append(f"| {roi} | {pairs[0, 1]:.3f} | {pairs[0, 2]:.3f} | {pairs[1, 2]:.3f} |")
  lines.append("")
  return lines


def note_text(
  config: SimulationConfig, n_concepts: int, test_concepts, designs, voxmetas, agreement, default_names: bool
) -> str:
  """The text of ``SIMULATED.md`` (Markdown): what the files are, the ground truth, the config, per subject its
  trials / voxels / session -> exemplar map, and ``agreement`` (``between_subject_agreement``) per ROI."""
  lines = _intro_lines(n_concepts, test_concepts, default_names) + list(_GROUND_TRUTH) + _config_lines(config)
  return "\n".join(lines + _subject_lines(config, designs, voxmetas) + _agreement_lines(agreement))
