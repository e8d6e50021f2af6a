"""A simulated THINGS-fMRI brain with known ground truth, written in the exact ``betas_csv`` format.

The real THINGS-fMRI single-trial responses (Hebart et al. 2023) cannot be downloaded in the offline
demo, so the demo's brain is simulated: three subjects' ``sub-0N_{ResponseData.h5,
StimulusMetadata.csv, VoxelMetadata.csv}`` generated from a documented encoding model, written with
:func:`brainalign.data.things_writer.write_subject` and read back through the real loader
(:func:`brainalign.data.things.load_things_fmri`). **None of it is real brain data**; a
``SIMULATED.md`` note next to the files says so. What the demo can show is whether a network's RSA
alignment tracks *this* ground truth, which is known by construction.

Ground-truth model
==================

All images are first brought to a 32 x 32 grid (linear resampling when H != 32); pixel units below
are pixels of that grid. Features are computed by :func:`ground_truth_features` for a whole stack at
once (FFT convolution, ``scipy.ndimage`` filters; no per-image loop).

V1 -- local oriented energy, small receptive fields.
  A bank of quadrature Gabor pairs, 8 orientations (0, 22.5, ..., 157.5 deg) x 2 spatial
  frequencies (1/4 and 1/8 cycles/px; Gaussian envelope sd = 0.56 wavelengths, about one octave),
  applied by FFT on a zero-padded 48 x 48 canvas. Energy = even^2 + odd^2 (the modulus of the
  analytic filter output squared); unit response = energy ** 0.25 (the square root of the energy
  amplitude: a compressive, rectified static nonlinearity). Sampled every 2 px (px 1, 3, ..., 31):
  16 x 16 positions x 16 channels = 4096 units.
V2 -- the V1 maps Gaussian-pooled over space with sd 2 px, sampled every 4 px (px 3, 7, ..., 31):
  8 x 8 x 16 = 1024 units.
V3 -- pooled with sd 4 px, sampled every 4 px (8 x 8 x 16), plus 4 orientation-opponent channels
  |p(theta) - p(theta + 90 deg)| per frequency (8 x 8 x 8): 1536 units.
hV4 -- position tolerance and second-order features: the V2-pooled maps max-pooled over 12 x 12 px
  windows centred every 8 px (px 5, 13, 21, 29; 4 x 4 x 16), plus 24 corner/curvature-like channels
  sqrt(p(theta_i) * p(theta_j)) for orientation pairs 45 and 90 deg apart (8 + 4 per frequency),
  max-pooled the same way (4 x 4 x 24): 640 units.
LOC -- shape plus category. Shape: a soft silhouette m = sigmoid((blur_1px(image) - 0.1) / 0.03);
  9 moment features (area, centroid x/y, normalised central second moments xx/yy/xy, elongation,
  orientation as cos/sin 2phi), its 8 x 8 block-mean outline (64), and the moduli of its low
  spatial-frequency Fourier coefficients (0 < |k| <= 3, one of each +-k pair: a position-invariant
  outline descriptor, 14). Each of the three shape blocks is z-scored per feature and weighted to variance shares
  0.4 / 0.4 / 0.2. Category: the one-hot label through a fixed random Gaussian projection to 32
  dimensions (``category_seed``), z-scored. LOC = shape (variance share 0.6) + category (0.4).
IT -- category (variance share 0.85) + the same shape block (0.15).
  (Z-scoring uses the images of the call, so features are standardised over the stack passed in.)

Voxels. Each subject has its own voxel weights (its own seed stream):

* V1, V2, V3, hV4 voxels pool *neighbouring* units only: a voxel has a random receptive-field
  centre (uniform over [2, 30] px in x and y), a Gaussian spatial weighting of the units around it
  (sd ``voxel_pool_sd_px``: 1.5 / 3 / 5 / 8 px for V1 / V2 / V3 / hV4) and random positive channel
  weights (Gamma(0.5) per channel), so every weight is >= 0 and a V1 voxel mixes a few nearby
  small-RF units.
* LOC (``lLOC`` and ``rLOC`` separately) and IT voxels: Gaussian random weights over all features
  (unit variance / d).
* Within an ROI the voxel signals are scaled together so that the *mean* voxel variance over the
  simulated images equals ``signal_sd[roi] ** 2`` (voxels with receptive fields on the empty border
  keep their low signal, as real peripheral voxels do). ``other`` voxels carry no signal.

Trials. Trial t of subject s, voxel v:

    y[v, t] = response_scale * (baseline[v] + signal[v, image(t)] + noise_sd[s] * eps[v, t]
                                + run_offset_sd * u[v, (session(t), run(t))])

with eps, u, baseline independent standard normal draws (baseline sd ``voxel_baseline_sd``); u is one
voxel pattern per (session, run) shared by every trial of that run, so same-run pairs are more
similar, as in the real data. Values are float64.

Design (via :func:`~brainalign.data.things_writer.make_design`): ``n_sessions`` sessions x ``n_runs``
runs; every session shows every concept once with one exemplar number (exemplars 1 .. n_sessions);
``n_test_concepts`` test concepts (drawn from the concepts with the seed) each have one test image
shown once per session. The session -> exemplar map is a per-subject permutation in which exemplar 01
lands in session ((3, 2, 5)[s] - 1) mod n_sessions + 1, mirroring the real sessions 3 / 2 / 5 of
sub-01/02/03 (with 12 sessions exactly those; with the default 2 sessions: 1 / 2 / 1). sub-01 and
sub-02 share the presentation-order seed and ``make_design`` keys the order on the exemplar number,
so their exemplar-01 trials have identical order and runs; sub-03 has its own seed
(docs/data-formats.md §8-§9). The loader orders RDM rows by sorted concept name.

Exemplars other than 01 and the test images are deterministic transforms of the concept's image
(``stimulus_set``): a horizontal flip with probability 1/2, a shift of up to
``exemplar_max_shift_px`` px in x and y (zero fill), a gamma in [0.8, 1.25] (log-uniform) and a
contrast scale in [0.75, 1]; parameters drawn per (concept, exemplar number) from the seed
(for every exemplar number 1..12, so adding sessions leaves existing exemplars unchanged), and for
the test images from their own stream. Exemplar 01 is the image given. Category labels of all
exemplars and test images are the concept's label.

Randomness: every draw comes from ``numpy.random.default_rng((config.seed, stream, ...))`` with a
distinct integer ``stream`` per purpose; there is no global RNG. Same config + inputs -> identical
files.

The parts: ``simulate_config`` (``SimulationConfig``), ``simulate_features`` (the ground-truth model),
``simulate_trials`` (stimuli, voxels, trials), ``simulate_note`` (``SIMULATED.md``); this module checks the
inputs and writes the files.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Sequence

import numpy as np

from brainalign.data import things_writer
from brainalign.data.simulate_config import COLUMN_TO_ROI, MAX_TRAIN_EXEMPLAR, SUBJECTS, SimulationConfig
from brainalign.data.simulate_features import ROIS, feature_maps, ground_truth_features
from brainalign.data.simulate_note import between_subject_agreement, note_text
from brainalign.data.simulate_trials import simulate_subject, stimulus_set
from brainalign.data.things_writer import default_stimulus_name

__all__ = ["ROIS", "SimulationConfig", "ground_truth_features", "simulate_things_fmri"]


def _validate(images, labels, concepts, config: SimulationConfig) -> None:
  if not (len(images) == len(labels) == len(concepts)):
    raise ValueError(
      f"images, labels and concepts must have one entry per concept; got {len(images)}, {len(labels)}, {len(concepts)}"
    )
  if len(set(concepts)) != len(concepts):
    raise ValueError("concepts must be unique")
  if not 1 <= config.n_sessions <= MAX_TRAIN_EXEMPLAR:
    raise ValueError(f"n_sessions must be in 1..{MAX_TRAIN_EXEMPLAR}, got {config.n_sessions}")
  if not 0 <= config.n_test_concepts <= len(concepts):
    raise ValueError(f"n_test_concepts must be in 0..{len(concepts)}, got {config.n_test_concepts}")
  if len(config.noise_sd) != len(SUBJECTS):
    raise ValueError(f"noise_sd needs one value per subject ({len(SUBJECTS)}), got {config.noise_sd}")
  unknown = [col for col, _ in config.roi_sizes if col not in COLUMN_TO_ROI]
  if unknown:
    raise ValueError(f"roi_sizes: no ground-truth model for columns {unknown}; valid: {sorted(COLUMN_TO_ROI)}")
  missing = {COLUMN_TO_ROI[col] for col, _ in config.roi_sizes} - set(dict(config.signal_sd))
  if missing:
    raise ValueError(f"signal_sd lacks ROIs {sorted(missing)}")


def simulate_things_fmri(
  images: np.ndarray,
  labels: np.ndarray,
  concepts: Sequence[str],
  out_dir,
  config: SimulationConfig = SimulationConfig(),  # noqa: B008 (frozen: one shared default is safe)
  *,
  stimulus_name: Callable[[str, int], str] = default_stimulus_name,
) -> pathlib.Path:
  """Write a simulated three-subject THINGS-fMRI ``betas_csv`` folder (model: module docstring).

  Args:
    images: [C, H, W] one image per concept, grayscale float in [0, 1] (uint8 / 255), H == W: the
      concept's exemplar-01 image (the one a stimulus folder holds under ``stimulus_name(c, 1)``).
    labels: [C] int category of each concept (drives the LOC / IT category signal).
    concepts: [C] unique concept names (THINGS uniqueID style); C % config.n_runs == 0. The loader
      orders RDM rows by ``sorted(concepts)``, not by this order.
    out_dir: the files go to ``out_dir/betas_csv/`` (created if needed).
    config: every number of the simulation.
    stimulus_name: ``(concept, exemplar) -> file name``, as for ``things_writer.make_design``.

  Returns:
    ``out_dir/betas_csv``, holding ``sub-0{1,2,3}_{ResponseData.h5, StimulusMetadata.csv,
    VoxelMetadata.csv}`` (written atomically by ``things_writer.write_subject``) and
    ``SIMULATED.md`` (what this is, config, ground truth, measured between-subject agreement).
  """
  concepts = [str(c) for c in concepts]
  labels = np.asarray(labels)
  _validate(images, labels, concepts, config)
  stim, stim_index, test_concepts, concept_of_image = stimulus_set(images, concepts, config, stimulus_name)
  stim_labels = labels[concept_of_image]
  features = feature_maps(stim, stim_labels, config.category_seed)
  out = pathlib.Path(out_dir) / "betas_csv"
  designs, voxmetas, responses = [], [], []
  for s, subject in enumerate(SUBJECTS):
    design, voxmeta, resp = simulate_subject(s, features, stim_index, concepts, test_concepts, config, stimulus_name)
    things_writer.write_subject(out, subject, design, voxmeta, resp)
    designs.append(design)
    voxmetas.append(voxmeta)
    responses.append(resp)
  agreement = between_subject_agreement(designs, voxmetas, responses, config, {stimulus_name(c, 1) for c in concepts})
  note = note_text(
    config, len(concepts), test_concepts, designs, voxmetas, agreement, stimulus_name is default_stimulus_name
  )
  tmp = out / f".SIMULATED.md.{os.getpid()}.tmp"
  tmp.write_text(note, encoding="utf-8")
  os.replace(tmp, out / "SIMULATED.md")
  return out
