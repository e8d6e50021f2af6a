"""Stimuli, voxels and trials of the simulated brain: what one subject's three files hold.

As described in ``simulate``'s module docstring ("Voxels", "Trials", "Design", the exemplars): the images the
design can show (``stimulus_set``: exemplar 01 as given, other exemplars and test images as transformed
copies), each subject's session -> exemplar map and presentation-order seed, voxel signals pooled from the
ground-truth features (``simulate_features``), and trial responses ``[n_vox, n_trials]``
(``simulate_subject``). The tables come from the writer's ``make_design`` / ``make_voxel_metadata``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from brainalign.data import things_writer
from brainalign.data.simulate_config import COLUMN_TO_ROI, MAX_TRAIN_EXEMPLAR, SUBJECTS, SimulationConfig
from brainalign.data.simulate_features import GRID_PX, as_grid

__all__ = ["stimulus_set", "exemplar_for_session", "order_seed", "simulate_subject"]

_REAL_FIRST_SESSIONS = (3, 2, 5)  # session of exemplar 01 in the real data, sub-01/02/03

# Seed streams (second entry of every default_rng seed tuple).
_S_EXEMPLAR, _S_TEST, _S_WEIGHTS, _S_NOISE, _S_RUN, _S_VOXMETA, _S_ORDER, _S_PERM, _S_BASE = range(9)


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


def stimulus_set(
  images: np.ndarray, concepts: Sequence[str], config: SimulationConfig, stimulus_name: Callable[[str, int], str]
):
  """All images the design can show: exemplars 1..n_sessions of every concept + the test images.

  Returns (stimulus images [N, 32, 32], (image index per train stimulus name, image index per test
  concept), test concepts, concept index per image [N]). Image order: concept-major train
  exemplars 1..n_sessions, then the test images.
  """
  x = as_grid(images)
  c, e = len(concepts), config.n_sessions
  ms = config.exemplar_max_shift_px
  # Parameters for every (concept, exemplar 1..12) so that adding sessions never changes the others.
  flip, shift, gamma, contrast = _transform_params(
    np.random.default_rng((config.seed, _S_EXEMPLAR)), (c, MAX_TRAIN_EXEMPLAR), ms
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


def exemplar_for_session(subject: int, config: SimulationConfig) -> list[int]:
  """Per-subject session -> exemplar permutation; exemplar 01 in session (3, 2, 5)[s] mod n."""
  n = config.n_sessions
  first = (_REAL_FIRST_SESSIONS[subject] - 1) % n
  others = list(np.random.default_rng((config.seed, _S_PERM, subject)).permutation(np.arange(2, n + 1)))
  return [1 if s == first else int(others.pop()) for s in range(n)]


def order_seed(subject: int, seed: int) -> int:
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
    ctr = rng.uniform(2.0, GRID_PX - 2.0, size=(n_vox, 2))  # RF centre (y, x) in px
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


def _subject_tables(
  subject: int, concepts, test_concepts, config: SimulationConfig, stimulus_name
) -> tuple[pd.DataFrame, pd.DataFrame]:
  """(StimulusMetadata ``[n_trials]``, VoxelMetadata ``[n_vox]``) of one subject, from the writer."""
  sid = subject + 1
  design = things_writer.make_design(
    concepts,
    subject_id=sid,
    n_sessions=config.n_sessions,
    n_runs=config.n_runs,
    exemplar_for_session=exemplar_for_session(subject, config),
    test_concepts=test_concepts,
    order_seed=order_seed(subject, config.seed),
    stimulus_name=stimulus_name,
  )
  voxmeta = things_writer.make_voxel_metadata(
    sid,
    dict(config.roi_sizes),
    config.n_other_voxels,
    seed=int(np.random.SeedSequence((config.seed, _S_VOXMETA, subject)).generate_state(1)[0]),
  )
  return design, voxmeta


def _trial_images(subject: int, design: pd.DataFrame, stim_index) -> np.ndarray:
  """``[n_trials]`` int64: the stimulus image (row of ``stimulus_set``'s images) each trial shows."""
  train_index, test_index = stim_index
  is_test = (design["trial_type"] == "test").to_numpy()
  image = np.where(is_test, design["concept"].map(test_index), design["stimulus"].map(train_index))
  if np.isnan(image).any():
    raise ValueError(f"{SUBJECTS[subject]}: design shows stimuli the simulation has no image for")
  return image.astype(np.int64)


def _roi_signals(subject: int, voxmeta: pd.DataFrame, features, config: SimulationConfig) -> np.ndarray:
  """``[n_vox, N_images]`` noise-free signals: each ROI column's voxels scaled to ``signal_sd``; 0 elsewhere."""
  signal = np.zeros((len(voxmeta), len(features["IT"][0])))
  rng_w = np.random.default_rng((config.seed, _S_WEIGHTS, subject))
  signal_sd = dict(config.signal_sd)
  for col, _ in config.roi_sizes:
    rows = np.flatnonzero(voxmeta[col].to_numpy() == 1)
    roi = COLUMN_TO_ROI[col]
    feats, centres = features[roi]
    signal[rows] = signal_sd[roi] * _voxel_signals(rng_w, roi, feats, centres, rows.size, config).T
  return signal


def simulate_subject(
  subject: int,
  features,
  stim_index: Mapping[str, int],
  concepts,
  test_concepts,
  config: SimulationConfig,
  stimulus_name,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
  """(StimulusMetadata, VoxelMetadata, responses [n_vox, n_trials] float64) of one subject.

  ``features``: ``feature_maps`` of ``stimulus_set``'s images; ``stim_index``: its (train name, test concept)
  -> image maps. Responses follow the trial model of ``simulate``'s module docstring.
  """
  design, voxmeta = _subject_tables(subject, concepts, test_concepts, config, stimulus_name)
  image = _trial_images(subject, design, stim_index)
  n_vox, n_trials = len(voxmeta), len(design)
  signal = _roi_signals(subject, voxmeta, features, config)
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
