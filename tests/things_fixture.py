"""Tiny, format-exact THINGS-fMRI ``betas_csv`` fixture (docs/data-formats.md §9), written with things_writer.

3 subjects × 3 sessions × 2 runs; 12 train concepts (with the pitfall names ``ant``/``anteater``,
``camera``/``camera1``, ``banana``/``banana_split``, ``yo-yo``, ``ping-pong_table``) + 2 test concepts;
per session 12 train + 2 test trials → 42 trials per subject; 40 / 52 / 31 voxels.

Planted structure, per subject: every image (train or test) has a random voxel pattern; every
(session, run) a random voxel offset shared by its trials; each voxel its own baseline and gain (so
z-scoring matters); plus small noise:

    responses[v, t] = baseline[v] + gain[v] * (pattern[stimulus(t), v] + RUN_OFFSET * offset[run(t), v]
                                               + NOISE * eps[v, t])
"""

from __future__ import annotations

import pathlib

import numpy as np

from brainalign.data import things_writer as tw

SUBJECTS = ("sub-01", "sub-02", "sub-03")
CONCEPTS = (
  "yo-yo",
  "ant",
  "camera1",
  "anteater",
  "ping-pong_table",
  "banana_split",
  "camera",
  "banana",
  "dog",
  "mango",
  "spatula",
  "candelabra",
)
TEST_CONCEPTS = ("candelabra", "ant")
N_SESSIONS, N_RUNS = 3, 2
RUN_OFFSET, NOISE = 0.6, 0.1

# Per subject: session -> exemplar (so `_01` is in session 3 / 2 / 1), order seed (sub-01 and sub-02
# share it), and ROI blocks (IT last so the v1 variant keeps the other ROIs on the same rows).
_DESIGN = {
  "sub-01": dict(
    subject_id=1,
    exemplars=(2, 3, 1),
    order_seed=101,
    n_other=6,
    rois={"V1": 6, "V2": 5, "V3": 4, "hV4": 4, "lLOC": 3, "rLOC": 4, "IT": 8},
  ),
  "sub-02": dict(
    subject_id=2,
    exemplars=(3, 1, 2),
    order_seed=101,
    n_other=12,
    rois={"V1": 7, "V2": 6, "V3": 5, "hV4": 5, "lLOC": 4, "rLOC": 3, "IT": 10},
  ),
  "sub-03": dict(
    subject_id=3,
    exemplars=(1, 3, 2),
    order_seed=202,
    n_other=4,
    rois={"hV4": 3, "rLOC": 3, "V1": 5, "lLOC": 3, "V2": 4, "V3": 3, "IT": 6},
  ),
}
FIRST_SESSION = {s: d["exemplars"].index(1) + 1 for s, d in _DESIGN.items()}


def write_fixture(
  root, *, name_set: str = "public", release: str = "v2", seed: int = 0, test_concepts: tuple = TEST_CONCEPTS
) -> dict:
  """Write the fixture into ``root/betas_csv``; return what the tests need.

  Responses and voxel geometry depend only on ``seed`` (not on ``name_set``/``release``); the v1
  variant drops the ``concept`` column and turns the ``IT`` voxels into no-ROI voxels on the same rows.
  ``test_concepts``: the concepts with one test image each (shown once per session).

  Returns:
    dict with ``betas_dir``, ``subjects``, ``files`` {sub: SubjectFiles}, ``stimulus_metadata``,
    ``voxel_metadata``, ``responses`` {sub: [n_vox, 42]}, ``concepts`` (sorted), ``expected_stimuli``
    (``<concept>_01b.jpg`` in concept order), ``first_session`` {sub: int}, ``expected_trial_ids`` and
    ``expected_runs`` {sub: [12] int64}, ``roi_sizes``, ``n_vox``, ``clean`` {sub: [n_vox, 42]
    noise-free planted signal (pattern + run offset)}, ``test_concepts``.
  """
  betas_dir = pathlib.Path(root) / "betas_csv"
  concepts = tuple(sorted(CONCEPTS))
  out = dict(
    root=pathlib.Path(root),
    betas_dir=betas_dir,
    subjects=SUBJECTS,
    concepts=concepts,
    test_concepts=tuple(test_concepts),
    first_session=dict(FIRST_SESSION),
    expected_stimuli=tuple(f"{c}_01b.jpg" for c in concepts),
    files={},
    stimulus_metadata={},
    voxel_metadata={},
    responses={},
    clean={},
    expected_trial_ids={},
    expected_runs={},
    roi_sizes={},
    n_vox={},
  )
  for k, subject in enumerate(SUBJECTS):
    d = _DESIGN[subject]
    design = tw.make_design(
      CONCEPTS,
      subject_id=d["subject_id"],
      n_sessions=N_SESSIONS,
      n_runs=N_RUNS,
      exemplar_for_session=d["exemplars"],
      test_concepts=tuple(test_concepts),
      order_seed=d["order_seed"] + 1000 * seed,
      release="v2",
    )
    rois, n_other = dict(d["rois"]), d["n_other"]
    if release == "v1":
      n_other += rois.pop("IT")
    vox = tw.make_voxel_metadata(d["subject_id"], rois, n_other, seed=1000 * seed + k, release=release)
    n_vox, n_trials = len(vox), len(design)

    rng = np.random.default_rng((seed, k, 7))
    stimuli = sorted(set(design["stimulus"]))
    pattern = {s: rng.normal(size=n_vox) for s in stimuli}
    run_keys = sorted(set(zip(design["session"], design["run"])))
    offset = {r: rng.normal(size=n_vox) for r in run_keys}
    clean = np.stack(
      [
        pattern[s] + RUN_OFFSET * offset[(ses, run)]
        for s, ses, run in zip(design["stimulus"], design["session"], design["run"])
      ],
      axis=1,
    )
    baseline = rng.normal(scale=0.05, size=(n_vox, 1))
    gain = rng.uniform(0.01, 0.08, size=(n_vox, 1))
    responses = baseline + gain * (clean + NOISE * rng.normal(size=clean.shape))

    stim_md = design.drop(columns="concept") if release == "v1" else design
    files = tw.write_subject(betas_dir, subject, stim_md, vox, responses, name_set=name_set)

    by_stim = dict(zip(design["stimulus"], range(n_trials)))
    tids = np.array([by_stim[s] for s in out["expected_stimuli"]], dtype=np.int64)
    out["files"][subject] = files
    out["stimulus_metadata"][subject] = stim_md
    out["voxel_metadata"][subject] = vox
    out["responses"][subject] = responses
    out["clean"][subject] = clean
    out["expected_trial_ids"][subject] = tids
    out["expected_runs"][subject] = (design["session"].to_numpy()[tids] * 100 + design["run"].to_numpy()[tids]).astype(
      np.int64
    )
    out["roi_sizes"][subject] = rois
    out["n_vox"][subject] = n_vox
  return out
