"""Statistics of the study (docs/methods.md §8.5-8.10): comparators, noise ceilings, the stimulus bootstrap, tests.

Everything that touches the [pairs] axis is compiled JAX; the small host-side summaries (percentiles,
p-values, corrections) are vectorised NumPy over whole grids.

Comparators (rsatoolbox names, `rsatoolbox.rdm.compare`):
  * "spearman": Pearson r of average ranks (ties share their mean rank).
  * "rho-a":    12 sum((r_x - m)(r_y - m)) / (N^3 - N), rsatoolbox's rho-a (= spearman without ties).
  * "corr":     Pearson r of the dissimilarities.
  * "cosine":   cosine of the (uncentred) dissimilarity vectors.
  * "tau-a":    (concordant - discordant) / (N (N - 1) / 2) over all pairs of entries, ties counted as
                neither (rsatoolbox's `_tau_a`). Counted without any loop over pairs of pairs: see `tau_a`
                below (O(P log P) per comparison, exact integer counts).

The stimulus bootstrap, exactly (docs/methods.md §8.6, rsatoolbox `eval_bootstrap_pattern`): a resample draws
n stimulus indices with replacement; both RDMs are indexed by it (rows and columns); pairs of positions
(a < b) whose entries are the same original stimulus are dropped; the cross-run criterion is applied to
the original stimuli of each remaining pair; every condition is scored on the same resample.
Implementation without any resampled array: if stimulus k is drawn c_k times, the resampled pair vector
contains every original pair (i < j) exactly c_i c_j times and nothing else (self-pairs i = i are the
dropped ones), and a pair is cross-run in the resample iff it is in the original. So a resampled
statistic is the *weighted* statistic over the original pairs (of the chosen pair set) with integer
weights w = c_i c_j (0 = not drawn). Ranks of the expanded vector are weighted mid-ranks,
    rank(v) = sum_{u < v} w_u + (sum_{u = v} w_u + 1) / 2,
computed per vector with one scatter-add into a histogram over fixed integer order keys, a cumsum and a
gather: O(P) per resample, no sort, shapes fixed. From `PLAN_MIN_RESAMPLES` resamples on, each vector is
sorted once up front (`rank_plan`) and a resample ranks it with gathers and one prefix sum instead (no
scatter; ~1.25x faster per resample on CPU, identical ranks). This is exactly equal to scoring the explicitly
resampled RDMs (tested against a NumPy loop and against rsatoolbox's subsample_pattern + compare).

Noise ceilings (Nili et al. 2014; rsatoolbox `boot_noise_ceiling`): lower = mean_s compare(RDM_s,
pool(RDMs_{t != s})), upper = mean_s compare(RDM_s, pool(all RDMs)); pooling as rsatoolbox's `pool_rdm`:
ranks averaged for spearman / rho-a / tau-a (then re-ranked by the comparator), z-scored vectors averaged for
corr, RMS-normalised vectors averaged for cosine. Values are raw correlations; nothing is divided by
a ceiling.

Group conventions: `bootstrap_rsa(..., mean_rdm=True)` also scores every model RDM against each ROI's
subject-mean RDM (element-wise mean of the subjects' dissimilarities; P1 v1/v2) on the same resamples.
Partial RSA (`partial_spearman`) has the same stimulus bootstrap in `bootstrap_partial` (weighted ranks,
weighted least-squares residuals, weighted re-ranking).
"""

from brainalign.stats.bootstrap import PLAN_MIN_RESAMPLES, bootstrap_rsa, draw_resamples, identity_resample
from brainalign.stats.compare import compare, noise_ceiling
from brainalign.stats.inference import (
  bh_fdr,
  bootstrap_p_two_sided,
  cohens_d,
  cohens_dz,
  holm,
  percentile_ci,
  sign_flip_p,
)
from brainalign.stats.kernels import COMPARATORS
from brainalign.stats.partial import (
  PARTIAL_FORMS,
  bootstrap_partial,
  luminance_rdm_vector,
  partial_spearman,
  pixel_rdm_vector,
)
from brainalign.stats.tau import tau_a

__all__ = [
  "COMPARATORS",
  "PARTIAL_FORMS",
  "PLAN_MIN_RESAMPLES",
  "bh_fdr",
  "bootstrap_p_two_sided",
  "bootstrap_partial",
  "bootstrap_rsa",
  "cohens_d",
  "cohens_dz",
  "compare",
  "draw_resamples",
  "holm",
  "identity_resample",
  "luminance_rdm_vector",
  "noise_ceiling",
  "partial_spearman",
  "percentile_ci",
  "pixel_rdm_vector",
  "sign_flip_p",
  "tau_a",
]
