"""Host-side inference on bootstrap and seed samples (NumPy, vectorised over whole grids): percentile CIs,
bootstrap and sign-flip p-values, BH-FDR and Holm corrections, Cohen's d. See brainalign.stats."""

import warnings

import numpy as np

# ----------------------------------------------------------------------------------------------------
# Bootstrap summaries (host side, vectorised over whole grids)
# ----------------------------------------------------------------------------------------------------


def percentile_ci(samples: np.ndarray, ci: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Percentile interval of bootstrap samples (NaN samples ignored).

  Args:
    samples: [B, ...] bootstrap replicates along `axis`.
    ci: coverage, e.g. 0.95 -> 2.5th and 97.5th percentiles (linear interpolation, NumPy's default).
  Returns:
    (lower [...], upper [...]); NaN where every sample is NaN.
  """
  if not 0 < ci < 1:
    raise ValueError(f"ci must be in (0, 1), got {ci}")
  a = 100 * (1 - ci) / 2
  with warnings.catch_warnings():  # an all-NaN slice (a condition that does not exist) gives NaN, as intended
    warnings.simplefilter("ignore", RuntimeWarning)
    lo, hi = np.nanpercentile(np.asarray(samples, np.float64), [a, 100 - a], axis=axis)
  return lo, hi


def bootstrap_p_two_sided(diffs: np.ndarray, axis: int = 0) -> np.ndarray:
  """Two-sided bootstrap p of a difference (docs/methods.md §8.6 step 7), capped at 1.

  p = (2 min(#{d_b <= 0}, #{d_b >= 0}) + 1) / (B + 1), B = number of non-NaN replicates.

  Args:
    diffs: [B, ...] per-resample differences d_b.
  Returns:
    [...] p-values.
  """
  d = np.asarray(diffs, np.float64)
  ok = ~np.isnan(d)
  b = ok.sum(axis=axis)
  le = (ok & (d <= 0)).sum(axis=axis)
  ge = (ok & (d >= 0)).sum(axis=axis)
  return np.minimum(1.0, (2 * np.minimum(le, ge) + 1) / (b + 1))


def sign_flip_p(diffs: np.ndarray) -> np.ndarray:
  """Exact one-sided sign-flip permutation p over paired differences (docs/methods.md §8.7, P3).

  p = #{s in {-1, +1}^K : mean_k(s_k d_k) >= mean_k(d_k)} / 2^K, all 2^K assignments enumerated
  (the identity included, so p >= 2^-K). A tolerance of 1e-12 x sum|d| absorbs rounding ties.

  Args:
    diffs: [..., K] paired differences (K seeds), K <= 20.
  Returns:
    [...] p-values.
  """
  d = np.asarray(diffs, np.float64)
  k = d.shape[-1]
  if not 1 <= k <= 20:
    raise ValueError(f"sign_flip_p enumerates 2^K assignments; K must be in [1, 20], got {k}")
  signs = 1.0 - 2.0 * ((np.arange(2**k)[:, None] >> np.arange(k)[None, :]) & 1)  # [2^K, K]
  null = d @ signs.T / k  # [..., 2^K]
  obs = d.mean(axis=-1, keepdims=True)
  tol = 1e-12 * np.abs(d).sum(axis=-1, keepdims=True)
  p = (null >= obs - tol).mean(axis=-1)
  return np.where(np.isnan(d).any(axis=-1), np.nan, p)


def bh_fdr(p: np.ndarray) -> np.ndarray:
  """Benjamini-Hochberg adjusted p (q-values) over one family (docs/methods.md §8.8).

  q_(i) = min_{j >= i} min(1, m p_(j) / j), returned in the input order.

  Args:
    p: [m] p-values of the family (no NaN).
  Returns:
    [m] adjusted p-values.
  """
  p = _family(p)
  m = p.size
  order = np.argsort(p, kind="stable")
  scaled = np.minimum(1.0, m * p[order] / np.arange(1, m + 1))
  q = np.minimum.accumulate(scaled[::-1])[::-1]
  out = np.empty(m)
  out[order] = q
  return out


def holm(p: np.ndarray) -> np.ndarray:
  """Holm step-down adjusted p over one family (docs/methods.md §8.8).

  p_adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)), returned in the input order.

  Args:
    p: [m] p-values (no NaN).
  Returns:
    [m] adjusted p-values.
  """
  p = _family(p)
  m = p.size
  order = np.argsort(p, kind="stable")
  scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
  adj = np.maximum.accumulate(scaled)
  out = np.empty(m)
  out[order] = adj
  return out


def _family(p) -> np.ndarray:
  p = np.asarray(p, np.float64)
  if p.ndim != 1:
    raise ValueError(f"a family of p-values must be 1-D, got shape {p.shape}")
  if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
    raise ValueError("p-values must lie in [0, 1] and not be NaN; drop undefined tests from the family first")
  return p


def cohens_d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Cohen's d with the averaged-variance SD (docs/methods.md §8.9): (mean_a - mean_b) / sqrt((s_a^2 + s_b^2) / 2).

  Args:
    a: [..., n_a] scores of condition A (seeds or subjects on the last axis); b: [..., n_b]. ddof = 1.
  Returns:
    [...] d (NaN if both SDs are 0 and the means are equal; +-inf if only the SDs are 0).
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape[-1] < 2 or b.shape[-1] < 2:
    raise ValueError("Cohen's d needs at least 2 values per group (sample SD, ddof=1)")
  sd = np.sqrt((a.var(axis=-1, ddof=1) + b.var(axis=-1, ddof=1)) / 2)
  with np.errstate(divide="ignore", invalid="ignore"):
    return (a.mean(axis=-1) - b.mean(axis=-1)) / sd


def cohens_dz(diffs: np.ndarray) -> np.ndarray:
  """Paired Cohen's d_z = mean(d) / sd(d) (ddof = 1) over the last axis [..., K] -> [...]."""
  d = np.asarray(diffs, np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    return d.mean(axis=-1) / d.std(axis=-1, ddof=1)
