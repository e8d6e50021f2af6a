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
(things-format.md §8-§9). The loader orders RDM rows by sorted concept name.

Exemplars other than 01 and the test images are deterministic transforms of the concept's image
(``_stimulus_set``): a horizontal flip with probability 1/2, a shift of up to
``exemplar_max_shift_px`` px in x and y (zero fill), a gamma in [0.8, 1.25] (log-uniform) and a
contrast scale in [0.75, 1]; parameters drawn per (concept, exemplar number) from the seed
(for every exemplar number 1..12, so adding sessions leaves existing exemplars unchanged), and for
the test images from their own stream. Exemplar 01 is the image given. Category labels of all
exemplars and test images are the concept's label.

Randomness: every draw comes from ``numpy.random.default_rng((config.seed, stream, ...))`` with a
distinct integer ``stream`` per purpose; there is no global RNG. Same config + inputs -> identical
files.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.fft
import scipy.ndimage
import scipy.stats

from brainalign.data import things_writer
from brainalign.data.things_writer import default_stimulus_name

__all__ = ["ROIS", "SimulationConfig", "ground_truth_features", "simulate_things_fmri"]

#: ROIs of the ground-truth model, in the order of :func:`ground_truth_features`.
ROIS: tuple[str, ...] = ("V1", "V2", "V3", "hV4", "LOC", "IT")

#: Which model ROI drives each VoxelMetadata ROI column (the loader's LOC = lLOC OR rLOC).
_COLUMN_TO_ROI: dict[str, str] = {
  "V1": "V1",
  "V2": "V2",
  "V3": "V3",
  "hV4": "hV4",
  "lLOC": "LOC",
  "rLOC": "LOC",
  "IT": "IT",
}

_GRID_PX = 32  # every image is resampled to this grid
_CANVAS_PX = 48  # zero-padded FFT canvas (8-px margin)
_N_ORIENT = 8
_FREQS = (1 / 4, 1 / 8)  # cycles / px
_ENVELOPE_WAVELENGTHS = 0.56  # Gaussian envelope sd in wavelengths (~1 octave)
_REAL_FIRST_SESSIONS = (3, 2, 5)  # session of exemplar 01 in the real data, sub-01/02/03

# Seed streams (second entry of every default_rng seed tuple).
_S_EXEMPLAR, _S_TEST, _S_WEIGHTS, _S_NOISE, _S_RUN, _S_VOXMETA, _S_ORDER, _S_PERM, _S_BASE = range(9)


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
  """Every number of the simulated brain. Defaults are sized for the demo (720 concepts, 32 px).

  With the defaults each subject has 2 x (720 + 20) = 1480 trials and 1230 voxels (15 MB of
  float64), and the between-subject RDM agreement of sub-01 vs sub-02 is moderate in every ROI
  (see the module docstring and SIMULATED.md for the measured values).
  """

  seed: int = 0  # root of every random stream
  n_sessions: int = 2  # sessions = exemplar numbers simulated per concept (<= 12)
  n_runs: int = 10  # runs per session (real data: 10)
  n_test_concepts: int = 20  # test images, each shown once per session (real: 100)
  roi_sizes: tuple = (
    ("V1", 200),
    ("V2", 180),
    ("V3", 160),
    ("hV4", 150),
    ("lLOC", 100),
    ("rLOC", 90),
    ("IT", 250),
  )  # voxels per VoxelMetadata ROI column
  n_other_voxels: int = 100  # voxels outside every simulated ROI (noise only)
  noise_sd: tuple = (1.0, 1.0, 1.6)  # trial noise per subject; sub-03 noisier, as in the real data
  run_offset_sd: float = 0.3  # sd of the per-(session, run) voxel pattern
  # Mean voxel signal sd over the images, per model ROI (noise sd is 1): chosen so that at the demo
  # size every ROI's sub-01 vs sub-02 RDM agreement is ~0.3 and sub-03's ~0.15 (SIMULATED.md).
  signal_sd: tuple = (("V1", 0.4), ("V2", 0.4), ("V3", 0.5), ("hV4", 0.7), ("LOC", 0.5), ("IT", 0.45))
  voxel_pool_sd_px: tuple = (("V1", 1.5), ("V2", 3.0), ("V3", 5.0), ("hV4", 8.0))  # voxel RF pooling
  voxel_baseline_sd: float = 1.0  # per-voxel constant (removed by the loader's z-score)
  response_scale: float = 0.05  # overall unit: puts values near the real +-0.15 range
  exemplar_max_shift_px: int = 3  # other exemplars / test images: shift range, px
  category_seed: int = 0  # seed of the fixed category projection (ground truth)


# --------------------------------------------------------------------------------------------------
# Ground-truth features
# --------------------------------------------------------------------------------------------------


def _as_grid(images: np.ndarray) -> np.ndarray:
  """[n, H, W] (float in [0, 1], or uint8) -> float64 [n, 32, 32] on the model grid."""
  x = np.asarray(images)
  if x.ndim != 3 or x.shape[1] != x.shape[2]:
    raise ValueError(f"images must be [n, H, W] with H == W, got shape {x.shape}")
  x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
  if x.shape[1] != _GRID_PX:
    x = scipy.ndimage.zoom(
      x, (1, _GRID_PX / x.shape[1], _GRID_PX / x.shape[2]), order=1, grid_mode=True, mode="grid-constant"
    )
  return x


def _gabor_energy(x: np.ndarray) -> np.ndarray:
  """[n, 32, 32] -> [n, 16, 16, 16]: energy ** 0.25 sampled every 2 px (at px 1, 3, ..., 31).

  Channel = frequency_index * 8 + orientation_index.
  """
  n = x.shape[0]
  canvas = np.zeros((n, _CANVAS_PX, _CANVAS_PX), np.float32)
  o = (_CANVAS_PX - _GRID_PX) // 2
  canvas[:, o : o + _GRID_PX, o : o + _GRID_PX] = x
  spec = scipy.fft.fft2(canvas, workers=-1)
  fy = np.fft.fftfreq(_CANVAS_PX)[:, None]
  fx = np.fft.fftfreq(_CANVAS_PX)[None, :]
  keep = slice(o + 1, o + _GRID_PX, 2)  # px 1, 3, ..., 31 of the image
  out = np.empty((n, _GRID_PX // 2, _GRID_PX // 2, len(_FREQS) * _N_ORIENT), np.float32)
  for fi, f in enumerate(_FREQS):
    sd = _ENVELOPE_WAVELENGTHS / f
    for k in range(_N_ORIENT):
      th = np.pi * k / _N_ORIENT
      # One-sided Gaussian in the frequency domain = complex Gabor; |output| = quadrature amplitude.
      g = np.exp(-2 * np.pi**2 * sd**2 * ((fx - f * np.cos(th)) ** 2 + (fy - f * np.sin(th)) ** 2))
      resp = scipy.fft.ifft2(spec * g.astype(np.complex64), workers=-1)[:, keep, keep]
      out[..., fi * _N_ORIENT + k] = np.sqrt(np.abs(resp) * 2.0)  # (energy) ** 0.25
  return out


def _blur(maps: np.ndarray, sd_px: float) -> np.ndarray:
  """Gaussian pooling of [n, 16, 16, c] maps on the 2-px grid; sd in px of the 32-px image."""
  return scipy.ndimage.gaussian_filter(maps, sigma=(0, sd_px / 2, sd_px / 2, 0), mode="constant")


_V1_CENTRES = np.arange(1, _GRID_PX, 2, dtype=np.float64)  # px of the 16 V1 grid positions


def _corner_pairs() -> list[tuple[int, int]]:
  """Orientation-channel pairs 45 and 90 deg apart, within each frequency (2 x (8 + 4) = 24)."""
  pairs = []
  for fi in range(len(_FREQS)):
    for k in range(_N_ORIENT):
      for step in (2, 4):  # 45 and 90 deg
        j = (k + step) % _N_ORIENT
        if step == 4 and j < k:
          continue  # 90-deg pairs are symmetric: count once
        pairs.append((fi * _N_ORIENT + k, fi * _N_ORIENT + j))
  return pairs


def _zscore(f: np.ndarray) -> np.ndarray:
  sd = f.std(axis=0)
  return (f - f.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _block(f: np.ndarray, share: float) -> np.ndarray:
  """Z-score the columns, then scale so that the block's summed variance equals `share`."""
  return _zscore(f) * np.sqrt(share / f.shape[1])


def _shape_features(x: np.ndarray) -> np.ndarray:
  """Silhouette moments, 8 x 8 outline and low-frequency Fourier moduli -> [n, 87] (variance 1)."""
  n = x.shape[0]
  m = 1.0 / (1.0 + np.exp(-(scipy.ndimage.gaussian_filter(x, (0, 1, 1)) - 0.1) / 0.03))
  yy, xx = np.meshgrid(np.arange(_GRID_PX) / _GRID_PX - 0.5, np.arange(_GRID_PX) / _GRID_PX - 0.5, indexing="ij")
  area = m.mean(axis=(1, 2)) + 1e-6
  cy = (m * yy).mean(axis=(1, 2)) / area
  cx = (m * xx).mean(axis=(1, 2)) / area
  dy, dx = yy[None] - cy[:, None, None], xx[None] - cx[:, None, None]
  myy = (m * dy * dy).mean(axis=(1, 2)) / area
  mxx = (m * dx * dx).mean(axis=(1, 2)) / area
  mxy = (m * dx * dy).mean(axis=(1, 2)) / area
  half_diff = np.sqrt(((mxx - myy) / 2) ** 2 + mxy**2)
  elong = half_diff / (0.5 * (mxx + myy) + 1e-9)
  phi2 = np.arctan2(2 * mxy, mxx - myy)
  moments = np.stack([area, cx, cy, mxx, myy, mxy, elong, np.cos(phi2), np.sin(phi2)], axis=1)
  outline = m.reshape(n, 8, 4, 8, 4).mean(axis=(2, 4)).reshape(n, 64)
  spec = np.abs(scipy.fft.fft2(m, workers=-1))
  ky, kx = np.meshgrid(np.arange(-3, 4), np.arange(0, 4), indexing="ij")
  keep = (ky**2 + kx**2 <= 9) & ((kx > 0) | (ky > 0))  # one of each +-k pair, no DC
  fourier = spec[:, ky[keep] % _GRID_PX, kx[keep]] / (area[:, None] * _GRID_PX**2)
  return np.concatenate([_block(moments, 0.4), _block(outline, 0.4), _block(fourier, 0.2)], axis=1)


def _category_features(labels: np.ndarray, seed: int) -> np.ndarray:
  """One-hot labels through a fixed random Gaussian projection -> [n, 32], variance 1."""
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
    raise ValueError("labels must be a 1-D array of non-negative integers")
  k = int(labels.max()) + 1 if labels.size else 1
  proj = np.random.default_rng((seed, 1000)).standard_normal((max(k, 10), 32))
  return _block(proj[labels], 1.0)


def _feature_maps(images: np.ndarray, labels: np.ndarray, category_seed: int = 0):
  """Ground-truth features with their layout.

  Returns {roi: (features [n, gy, gx, c] or [n, d], centres_px or None)}: spatial ROIs keep their
  grid (unit centres in px, the same along x and y), LOC/IT are flat.
  """
  x = _as_grid(images)
  if len(labels) != x.shape[0]:
    raise ValueError(f"{x.shape[0]} images but {len(labels)} labels")
  r = _gabor_energy(x)  # [n, 16, 16, 16], 2-px grid
  p2 = _blur(r, 2.0)
  p4 = _blur(r, 4.0)
  half = _N_ORIENT // 2
  opp = np.concatenate(
    [
      np.abs(p4[..., fi * _N_ORIENT : fi * _N_ORIENT + half] - p4[..., fi * _N_ORIENT + half : (fi + 1) * _N_ORIENT])
      for fi in range(len(_FREQS))
    ],
    axis=-1,
  )  # [n, 16, 16, 8]
  corners = np.sqrt(np.stack([p2[..., i] * p2[..., j] for i, j in _corner_pairs()], axis=-1))
  # Max over 12 x 12 px windows (6 x 6 cells of the 2-px grid), sampled every 8 px.
  v4 = scipy.ndimage.maximum_filter(np.concatenate([p2, corners], axis=-1), size=(1, 6, 6, 1), mode="constant")
  every4, every8 = slice(1, None, 2), slice(2, None, 4)  # px 3, 7, ..., 31 / 5, 13, 21, 29
  shape = _shape_features(x)
  cat = _category_features(labels, category_seed)
  return {
    "V1": (r, _V1_CENTRES),
    "V2": (p2[:, every4, every4], _V1_CENTRES[every4]),
    "V3": (np.concatenate([p4, opp], axis=-1)[:, every4, every4], _V1_CENTRES[every4]),
    "hV4": (v4[:, every8, every8], _V1_CENTRES[every8]),
    "LOC": (np.concatenate([np.sqrt(0.6) * shape, np.sqrt(0.4) * cat], axis=1), None),
    "IT": (np.concatenate([np.sqrt(0.15) * shape, np.sqrt(0.85) * cat], axis=1), None),
  }


def ground_truth_features(images: np.ndarray, labels: np.ndarray, *, category_seed: int = 0) -> dict[str, np.ndarray]:
  """The ground-truth model's unit responses per ROI (see the module docstring).

  Args:
    images: [n, H, W] grayscale, float in [0, 1] (uint8 is divided by 255); any H == W (resampled
      to 32 x 32).
    labels: [n] non-negative int category labels.
    category_seed: seed of the fixed random category projection (LOC, IT).
  Returns:
    {roi: float [n, d_roi]} for roi in ROIS = ('V1', 'V2', 'V3', 'hV4', 'LOC', 'IT'); d = 4096,
    1024, 1536, 640, 119, 119. Spatial ROIs are flattened in (y, x, channel) C order.
  """
  maps = _feature_maps(images, labels, category_seed)
  return {roi: f.reshape(f.shape[0], -1).astype(np.float64) for roi, (f, _) in maps.items()}


# --------------------------------------------------------------------------------------------------
# Stimuli, voxels, trials
# --------------------------------------------------------------------------------------------------

_SUBJECTS = ("sub-01", "sub-02", "sub-03")
_MAX_TRAIN_EXEMPLAR = 12  # exemplar numbers 1..12 are train images


def _transform(
  images: np.ndarray, flip: np.ndarray, shift: np.ndarray, gamma: np.ndarray, contrast: np.ndarray, max_shift: int
) -> np.ndarray:
  """Flip / shift (zero fill) / gamma / contrast each of [n, H, W] images; vectorised."""
  n, h, w = images.shape
  x = np.where(flip[:, None, None], images[:, :, ::-1], images)
  m = max_shift
  padded = np.pad(x, ((0, 0), (m, m), (m, m)))
  rows = np.arange(h)[None, :] + m - shift[:, 0:1]  # [n, H]
  cols = np.arange(w)[None, :] + m - shift[:, 1:2]  # [n, W]
  x = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
  return np.clip(x, 0.0, 1.0) ** gamma[:, None, None] * contrast[:, None, None]


def _transform_params(rng: np.random.Generator, shape: tuple[int, ...], max_shift: int):
  return (
    rng.random(shape) < 0.5,
    rng.integers(-max_shift, max_shift + 1, size=shape + (2,)),
    np.exp(rng.uniform(np.log(0.8), np.log(1.25), size=shape)),
    rng.uniform(0.75, 1.0, size=shape),
  )


def _stimulus_set(
  images: np.ndarray, concepts: Sequence[str], config: SimulationConfig, stimulus_name: Callable[[str, int], str]
):
  """All images the design can show: exemplars 1..n_sessions of every concept + the test images.

  Returns (stimulus images [N, 32, 32], (image index per train stimulus name, image index per test
  concept), test concepts, concept index per image [N]). Image order: concept-major train
  exemplars 1..n_sessions, then the test images.
  """
  x = _as_grid(images)
  c, e = len(concepts), config.n_sessions
  ms = config.exemplar_max_shift_px
  # Parameters for every (concept, exemplar 1..12) so that adding sessions never changes the others.
  flip, shift, gamma, contrast = _transform_params(
    np.random.default_rng((config.seed, _S_EXEMPLAR)), (c, _MAX_TRAIN_EXEMPLAR), ms
  )
  train = np.empty((c, e) + x.shape[1:])
  train[:, 0] = x  # exemplar 01: the image given
  if e > 1:
    sl = (slice(None), slice(1, e))
    flat = lambda a: a[sl].reshape((c * (e - 1),) + a.shape[2:])
    train[:, 1:] = _transform(
      np.repeat(x, e - 1, axis=0), flat(flip), flat(shift), flat(gamma), flat(contrast), ms
    ).reshape((c, e - 1) + x.shape[1:])
  rng = np.random.default_rng((config.seed, _S_TEST))
  test_idx = np.sort(rng.choice(c, size=config.n_test_concepts, replace=False))
  test = _transform(x[test_idx], *_transform_params(rng, (test_idx.size,), ms), ms)
  test_concepts = [concepts[i] for i in test_idx]

  names = [stimulus_name(concepts[i], k + 1) for i in range(c) for k in range(e)]
  train_index = {name: i for i, name in enumerate(names)}
  if len(train_index) != len(names):
    raise ValueError("stimulus_name gives clashing file names")
  test_index = {cn: c * e + t for t, cn in enumerate(test_concepts)}  # one test image per concept
  concept_of_image = np.concatenate([np.repeat(np.arange(c), e), test_idx])
  stim = np.concatenate([train.reshape((c * e,) + x.shape[1:]), test])
  return stim, (train_index, test_index), test_concepts, concept_of_image


def _exemplar_for_session(subject: int, config: SimulationConfig) -> list[int]:
  """Per-subject session -> exemplar permutation; exemplar 01 in session (3, 2, 5)[s] mod n."""
  n = config.n_sessions
  first = (_REAL_FIRST_SESSIONS[subject] - 1) % n
  others = list(np.random.default_rng((config.seed, _S_PERM, subject)).permutation(np.arange(2, n + 1)))
  return [1 if s == first else int(others.pop()) for s in range(n)]


def _order_seed(subject: int, seed: int) -> int:
  """sub-01 and sub-02 share the presentation-order seed; sub-03 has its own."""
  key = (seed, _S_ORDER) if subject < 2 else (seed, _S_ORDER, subject)
  return int(np.random.SeedSequence(key).generate_state(1)[0])


def _voxel_signals(
  rng: np.random.Generator,
  roi: str,
  feats: np.ndarray,
  centres: np.ndarray | None,
  n_vox: int,
  config: SimulationConfig,
) -> np.ndarray:
  """Noise-free voxel signals [N_images, n_vox] of one ROI column for one subject."""
  if centres is None:  # LOC, IT: dense random weights
    w = rng.standard_normal((feats.shape[1], n_vox)) / np.sqrt(feats.shape[1])
    sig = feats @ w
  else:  # local positive pooling
    sd = dict(config.voxel_pool_sd_px)[roi]
    n, g, _, c = feats.shape
    ctr = rng.uniform(2.0, _GRID_PX - 2.0, size=(n_vox, 2))  # RF centre (y, x) in px
    wy = np.exp(-((centres[None, :] - ctr[:, 0:1]) ** 2) / (2 * sd**2))  # [v, g]
    wx = np.exp(-((centres[None, :] - ctr[:, 1:2]) ** 2) / (2 * sd**2))
    spatial = (wy[:, :, None] * wx[:, None, :]).reshape(n_vox, g * g)
    spatial /= spatial.sum(axis=1, keepdims=True)
    chan = rng.gamma(0.5, 1.0, size=(n_vox, c))
    chan /= chan.sum(axis=1, keepdims=True)
    pooled = np.einsum("npc,vp->nvc", feats.reshape(n, g * g, c), spatial, optimize=True)
    sig = np.einsum("nvc,vc->nv", pooled, chan)
  sig = sig - sig.mean(axis=0)
  return sig / max(np.sqrt(sig.var(axis=0).mean()), 1e-12)  # mean voxel variance 1


def _validate(images, labels, concepts, config: SimulationConfig) -> None:
  if not (len(images) == len(labels) == len(concepts)):
    raise ValueError(
      f"images, labels and concepts must have one entry per concept; got {len(images)}, {len(labels)}, {len(concepts)}"
    )
  if len(set(concepts)) != len(concepts):
    raise ValueError("concepts must be unique")
  if not 1 <= config.n_sessions <= _MAX_TRAIN_EXEMPLAR:
    raise ValueError(f"n_sessions must be in 1..{_MAX_TRAIN_EXEMPLAR}, got {config.n_sessions}")
  if not 0 <= config.n_test_concepts <= len(concepts):
    raise ValueError(f"n_test_concepts must be in 0..{len(concepts)}, got {config.n_test_concepts}")
  if len(config.noise_sd) != len(_SUBJECTS):
    raise ValueError(f"noise_sd needs one value per subject ({len(_SUBJECTS)}), got {config.noise_sd}")
  unknown = [col for col, _ in config.roi_sizes if col not in _COLUMN_TO_ROI]
  if unknown:
    raise ValueError(f"roi_sizes: no ground-truth model for columns {unknown}; valid: {sorted(_COLUMN_TO_ROI)}")
  missing = {_COLUMN_TO_ROI[col] for col, _ in config.roi_sizes} - set(dict(config.signal_sd))
  if missing:
    raise ValueError(f"signal_sd lacks ROIs {sorted(missing)}")


def _simulate_subject(
  subject: int,
  features,
  stim_index: Mapping[str, int],
  concepts,
  test_concepts,
  config: SimulationConfig,
  stimulus_name,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
  """(StimulusMetadata, VoxelMetadata, responses [n_vox, n_trials] float64) of one subject."""
  sid = subject + 1
  design = things_writer.make_design(
    concepts,
    subject_id=sid,
    n_sessions=config.n_sessions,
    n_runs=config.n_runs,
    exemplar_for_session=_exemplar_for_session(subject, config),
    test_concepts=test_concepts,
    order_seed=_order_seed(subject, config.seed),
    stimulus_name=stimulus_name,
  )
  voxmeta = things_writer.make_voxel_metadata(
    sid,
    dict(config.roi_sizes),
    config.n_other_voxels,
    seed=int(np.random.SeedSequence((config.seed, _S_VOXMETA, subject)).generate_state(1)[0]),
  )
  train_index, test_index = stim_index
  is_test = (design["trial_type"] == "test").to_numpy()
  image = np.where(is_test, design["concept"].map(test_index), design["stimulus"].map(train_index))
  if np.isnan(image).any():
    raise ValueError(f"{_SUBJECTS[subject]}: design shows stimuli the simulation has no image for")
  image = image.astype(np.int64)
  n_vox, n_trials = len(voxmeta), len(design)

  signal = np.zeros((n_vox, len(features["IT"][0])))
  rng_w = np.random.default_rng((config.seed, _S_WEIGHTS, subject))
  signal_sd = dict(config.signal_sd)
  for col, _ in config.roi_sizes:
    rows = np.flatnonzero(voxmeta[col].to_numpy() == 1)
    roi = _COLUMN_TO_ROI[col]
    feats, centres = features[roi]
    signal[rows] = signal_sd[roi] * _voxel_signals(rng_w, roi, feats, centres, rows.size, config).T

  run_key = design["session"].to_numpy() * 1000 + design["run"].to_numpy()
  _, run_idx = np.unique(run_key, return_inverse=True)
  rng_run = np.random.default_rng((config.seed, _S_RUN, subject))
  offsets = config.run_offset_sd * rng_run.standard_normal((n_vox, run_idx.max() + 1))
  baseline = config.voxel_baseline_sd * np.random.default_rng((config.seed, _S_BASE, subject)).standard_normal(
    (n_vox, 1)
  )
  noise = np.random.default_rng((config.seed, _S_NOISE, subject)).standard_normal((n_vox, n_trials))
  resp = baseline + signal[:, image] + config.noise_sd[subject] * noise + offsets[:, run_idx]
  return design, voxmeta, (config.response_scale * resp).astype(np.float64)


def _between_subject_agreement(designs, voxmetas, responses, config: SimulationConfig, first_names: set[str]):
  """Spearman rho between subjects' exemplar-01 RDMs per ROI, by the loader's recipe (§8):
  z-score voxels over all trials, take the exemplar-01 trials in concept order, 1 - Pearson.

  Returns {roi: {(a, b): rho}} for subject pairs (0, 1), (0, 2), (1, 2).
  """
  cols = {}
  for col, _ in config.roi_sizes:
    cols.setdefault(_COLUMN_TO_ROI[col], []).append(col)
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


def _note(
  config: SimulationConfig, n_concepts: int, test_concepts, designs, voxmetas, agreement, default_names: bool
) -> str:
  import brainalign

  lines = [
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
    "## Config",
    "",
    "```python",
    *(f"{f.name} = {getattr(config, f.name)!r}" for f in dataclasses.fields(config)),
    "```",
    "",
    "## Subjects",
    "",
    "| subject | trials | voxels | session -> exemplar | session of _01 | noise_sd |",
    "|---|---|---|---|---|---|",
  ]
  for s, (design, voxmeta) in enumerate(zip(designs, voxmetas)):
    ex = _exemplar_for_session(s, config)
    lines.append(
      f"| {_SUBJECTS[s]} | {len(design)} | {len(voxmeta)} | "
      f"{', '.join(f'{k + 1}->{e:02d}' for k, e in enumerate(ex))} | {ex.index(1) + 1} | "
      f"{config.noise_sd[s]} |"
    )
  lines += [
    "",
    "sub-01 and sub-02 share the presentation order (same order seed); sub-03 has its own.",
    "",
    "## Between-subject RDM agreement (Spearman rho, all exemplar-01 pairs)",
    "",
    "| ROI | sub-01 vs sub-02 | sub-01 vs sub-03 | sub-02 vs sub-03 |",
    "|---|---|---|---|",
  ]
  for roi, pairs in agreement.items():
    lines.append(f"| {roi} | {pairs[0, 1]:.3f} | {pairs[0, 2]:.3f} | {pairs[1, 2]:.3f} |")
  lines.append("")
  return "\n".join(lines)


def simulate_things_fmri(
  images: np.ndarray,
  labels: np.ndarray,
  concepts: Sequence[str],
  out_dir,
  config: SimulationConfig = SimulationConfig(),
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
  stim, stim_index, test_concepts, concept_of_image = _stimulus_set(images, concepts, config, stimulus_name)
  stim_labels = labels[concept_of_image]
  features = _feature_maps(stim, stim_labels, config.category_seed)
  out = pathlib.Path(out_dir) / "betas_csv"
  designs, voxmetas, responses = [], [], []
  for s, subject in enumerate(_SUBJECTS):
    design, voxmeta, resp = _simulate_subject(s, features, stim_index, concepts, test_concepts, config, stimulus_name)
    things_writer.write_subject(out, subject, design, voxmeta, resp)
    designs.append(design)
    voxmetas.append(voxmeta)
    responses.append(resp)
  agreement = _between_subject_agreement(designs, voxmetas, responses, config, {stimulus_name(c, 1) for c in concepts})
  note = _note(
    config, len(concepts), test_concepts, designs, voxmetas, agreement, stimulus_name is default_stimulus_name
  )
  tmp = out / f".SIMULATED.md.{os.getpid()}.tmp"
  tmp.write_text(note, encoding="utf-8")
  os.replace(tmp, out / "SIMULATED.md")
  return out
