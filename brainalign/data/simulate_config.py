"""Every number of the simulated THINGS-fMRI brain (``SimulationConfig``) and the names its parts share.

The model the numbers belong to is described in ``simulate``'s module docstring; ``simulate`` re-exports
``SimulationConfig``.
"""

from __future__ import annotations

import dataclasses

__all__ = ["SimulationConfig", "SUBJECTS", "COLUMN_TO_ROI", "MAX_TRAIN_EXEMPLAR"]

#: Which model ROI drives each VoxelMetadata ROI column (the loader's LOC = lLOC OR rLOC).
COLUMN_TO_ROI: dict[str, str] = {
  "V1": "V1",
  "V2": "V2",
  "V3": "V3",
  "hV4": "hV4",
  "lLOC": "LOC",
  "rLOC": "LOC",
  "IT": "IT",
}

SUBJECTS = ("sub-01", "sub-02", "sub-03")
MAX_TRAIN_EXEMPLAR = 12  # exemplar numbers 1..12 are train images


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
  """Every number of the simulated brain. Defaults are sized for the demo (720 concepts, 32 px).

  With the defaults each subject has 2 x (720 + 20) = 1480 trials and 1230 voxels (15 MB of
  float64), and the between-subject RDM agreement of sub-01 vs sub-02 is moderate in every ROI
  (see ``simulate``'s module docstring and SIMULATED.md for the measured values).
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
