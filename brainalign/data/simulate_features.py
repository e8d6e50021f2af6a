"""The ground-truth model of the simulated brain: unit responses per ROI, V1 to IT, for a stack of images.

The model (Gabor energy, pooling, corner and opponent channels, silhouette shape, category projection) is
described in ``simulate``'s module docstring ("Ground-truth model"). ``ground_truth_features`` gives the
flat ``[n, d_roi]`` responses (re-exported by ``simulate``); ``feature_maps`` keeps the spatial ROIs' grids
for the voxel model (``simulate_trials``). All images are brought to the 32 x 32 grid first (``as_grid``).
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage

__all__ = ["ROIS", "GRID_PX", "as_grid", "feature_maps", "ground_truth_features"]

#: ROIs of the ground-truth model, in the order of :func:`ground_truth_features`.
ROIS: tuple[str, ...] = ("V1", "V2", "V3", "hV4", "LOC", "IT")

GRID_PX = 32  # every image is resampled to this grid
_CANVAS_PX = 48  # zero-padded FFT canvas (8-px margin)
_N_ORIENT = 8
_FREQS = (1 / 4, 1 / 8)  # cycles / px
_ENVELOPE_WAVELENGTHS = 0.56  # Gaussian envelope sd in wavelengths (~1 octave)


def as_grid(images: np.ndarray) -> np.ndarray:
  """[n, H, W] (float in [0, 1], or uint8) -> float64 [n, 32, 32] on the model grid."""
  x = np.asarray(images)
  if x.ndim != 3 or x.shape[1] != x.shape[2]:
    raise ValueError(f"images must be [n, H, W] with H == W, got shape {x.shape}")
  x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
  if x.shape[1] != GRID_PX:
    x = scipy.ndimage.zoom(
      x, (1, GRID_PX / x.shape[1], GRID_PX / x.shape[2]), order=1, grid_mode=True, mode="grid-constant"
    )
  return x


def _gabor_energy(x: np.ndarray) -> np.ndarray:
  """[n, 32, 32] -> [n, 16, 16, 16]: energy ** 0.25 sampled every 2 px (at px 1, 3, ..., 31).

  Channel = frequency_index * 8 + orientation_index.
  """
  n = x.shape[0]
  canvas = np.zeros((n, _CANVAS_PX, _CANVAS_PX), np.float32)
  o = (_CANVAS_PX - GRID_PX) // 2
  canvas[:, o : o + GRID_PX, o : o + GRID_PX] = x
  spec = scipy.fft.fft2(canvas, workers=-1)
  fy = np.fft.fftfreq(_CANVAS_PX)[:, None]
  fx = np.fft.fftfreq(_CANVAS_PX)[None, :]
  keep = slice(o + 1, o + GRID_PX, 2)  # px 1, 3, ..., 31 of the image
  out = np.empty((n, GRID_PX // 2, GRID_PX // 2, len(_FREQS) * _N_ORIENT), np.float32)
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


_V1_CENTRES = np.arange(1, GRID_PX, 2, dtype=np.float64)  # px of the 16 V1 grid positions


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
  yy, xx = np.meshgrid(np.arange(GRID_PX) / GRID_PX - 0.5, np.arange(GRID_PX) / GRID_PX - 0.5, indexing="ij")
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
  fourier = spec[:, ky[keep] % GRID_PX, kx[keep]] / (area[:, None] * GRID_PX**2)
  return np.concatenate([_block(moments, 0.4), _block(outline, 0.4), _block(fourier, 0.2)], axis=1)


def _category_features(labels: np.ndarray, seed: int) -> np.ndarray:
  """One-hot labels through a fixed random Gaussian projection -> [n, 32], variance 1."""
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
    raise ValueError("labels must be a 1-D array of non-negative integers")
  k = int(labels.max()) + 1 if labels.size else 1
  proj = np.random.default_rng((seed, 1000)).standard_normal((max(k, 10), 32))
  return _block(proj[labels], 1.0)


def feature_maps(images: np.ndarray, labels: np.ndarray, category_seed: int = 0):
  """Ground-truth features with their layout.

  Returns {roi: (features [n, gy, gx, c] or [n, d], centres_px or None)}: spatial ROIs keep their
  grid (unit centres in px, the same along x and y), LOC/IT are flat.
  """
  x = as_grid(images)
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
  """The ground-truth model's unit responses per ROI (see ``simulate``'s module docstring).

  Args:
    images: [n, H, W] grayscale, float in [0, 1] (uint8 is divided by 255); any H == W (resampled
      to 32 x 32).
    labels: [n] non-negative int category labels.
    category_seed: seed of the fixed random category projection (LOC, IT).
  Returns:
    {roi: float [n, d_roi]} for roi in ROIS = ('V1', 'V2', 'V3', 'hV4', 'LOC', 'IT'); d = 4096,
    1024, 1536, 640, 119, 119. Spatial ROIs are flattened in (y, x, channel) C order.
  """
  maps = feature_maps(images, labels, category_seed)
  return {roi: f.reshape(f.shape[0], -1).astype(np.float64) for roi, (f, _) in maps.items()}
