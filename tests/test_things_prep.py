"""Stimulus selection/aggregation and response preparation options of brainalign.data.things.

Oracles: hand-written expectations on small tables, and an independent whole-table computation with
pandas (``pd.read_hdf``, label-based trial selection, groupby z-scoring) plus scipy ``pdist``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist

from brainalign.data import things

try:
  from tests.things_fixture import write_fixture
except ImportError:  # tests/ not importable as a package
  from things_fixture import write_fixture


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
  return write_fixture(tmp_path_factory.mktemp("things_prep"))


def _hand_metadata():
  """Two sessions x one run; concepts a, b (train), test image of b shown in both sessions."""
  return pd.DataFrame(
    {
      "trial_type": ["train", "test", "train", "train", "test", "train"],
      "session": [1, 1, 1, 2, 2, 2],
      "run": [1, 1, 1, 1, 1, 1],
      "subject_id": [1] * 6,
      "trial_id": range(6),
      "stimulus": ["b_02n.jpg", "b_13s.jpg", "a_02n.jpg", "a_01b.jpg", "b_13s.jpg", "b_01b.jpg"],
      "concept": ["b", "b", "a", "a", "b", "b"],
    }
  )


def test_select_trials_hand_cases():
  """The three rules on a 6-trial table, expectations written out by hand."""
  md = _hand_metadata()
  first = things.select_trials(md, "first_exemplar")
  assert list(first.items["stimulus"]) == ["a_01b.jpg", "b_01b.jpg"]
  assert list(first.items["n_trials"]) == [1, 1]
  assert list(first.trials["trial_id"]) == [3, 5]
  np.testing.assert_array_equal(first.run_labels(), [201, 201])

  cm = things.select_trials(md, "concept_mean")
  assert list(cm.items["concept"]) == ["a", "b"]
  assert list(cm.items["stimulus"]) == ["a_01b.jpg", "b_01b.jpg"]  # the model sees the first exemplar
  assert list(cm.items["n_trials"]) == [2, 2]
  assert list(zip(cm.trials["item"], cm.trials["trial_id"])) == [(0, 2), (0, 3), (1, 0), (1, 5)]
  np.testing.assert_array_equal(cm.run_labels(), [-1, -1])
  np.testing.assert_array_equal(cm.averaging_matrix(), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])

  tm = things.select_trials(md, "test_mean")
  assert list(tm.items["stimulus"]) == ["b_13s.jpg"] and list(tm.items["n_trials"]) == [2]
  assert list(tm.trials["trial_id"]) == [1, 4]
  with pytest.raises(ValueError, match="unknown stimulus selection 'nope'"):
    things.select_trials(md, "nope")
  with pytest.raises(things.ThingsFormatError, match=r"my\.csv.*no rows with trial_type == 'test'"):
    things.select_trials(md[md.trial_type == "train"], "test_mean", path="my.csv")


def test_select_voxels_by_reliability_hand_case():
  """Mask only vs mask and nc_testset > 30 (strict), on a hand-made 5-voxel table; NaN never passes."""
  vox = pd.DataFrame({"voxel_id": range(5), "V1": [1, 1, 0, 1, 1], "nc_testset": [10.0, 30.0, 90.0, 31.0, np.nan]})
  np.testing.assert_array_equal(things.select_voxels(vox, ("V1",)), [0, 1, 3, 4])
  np.testing.assert_array_equal(things.select_voxels(vox, ("V1",), nc_testset_min=30), [3])
  with pytest.raises(things.ThingsFormatError, match=r"v\.csv.*V1 has no voxels with nc_testset > 50.*4 voxels"):
    things.select_voxels(vox, ("V1",), nc_testset_min=50, path="v.csv")
  with pytest.raises(things.ThingsFormatError, match=r"v\.csv.*'nc_testset'.*not found"):
    things.select_voxels(vox.drop(columns="nc_testset"), ("V1",), nc_testset_min=30, path="v.csv")


def _oracle(fx, subject, columns, *, selection="first_exemplar", zscore="all", nc_min=None):
  """Whole table with pandas, z-score with groupby, select/average by trial_id label, scipy pdist."""
  files = fx["files"][subject]
  df = pd.read_hdf(files.responses).drop(columns="voxel_id")
  vox = pd.read_csv(files.voxel_metadata)
  md = pd.read_csv(files.stimulus_metadata)
  mask = (vox[list(columns)] == 1).any(axis=1)
  if nc_min is not None:
    mask &= vox["nc_testset"] > nc_min
  data = df.loc[mask].T  # trials x voxels, index = trial_id labels
  if zscore == "all":
    key = np.zeros(len(md), int)
  elif zscore == "run":
    key = md["session"] * 100 + md["run"]
  else:
    key = md["session"]
  g = data.groupby(np.asarray(key))
  z = (data - g.transform("mean")) / g.transform(lambda c: c.std(ddof=0))
  if selection == "first_exemplar":
    rows = [z.loc[md.index[md.stimulus == f"{c}_01b.jpg"][0]] for c in fx["concepts"]]
    names = [f"{c}_01b.jpg" for c in fx["concepts"]]
  elif selection == "concept_mean":
    rows = [z.loc[md.index[(md.concept == c) & (md.trial_type == "train")]].mean() for c in fx["concepts"]]
    names = [f"{c}_01b.jpg" for c in fx["concepts"]]
  else:
    test = md[md.trial_type == "test"]
    names = sorted(set(test.stimulus), key=lambda s: (s.rsplit("_", 1)[0], s))
    rows = [z.loc[test.index[test.stimulus == s]].mean() for s in names]
  return pdist(np.stack([r.to_numpy() for r in rows]), "correlation"), names, int(mask.sum())


@pytest.mark.parametrize(
  "selection,zscore,nc_min",
  [
    ("first_exemplar", "run", None),
    ("first_exemplar", "session", None),
    ("first_exemplar", "all", 40.0),
    ("concept_mean", "all", None),
    ("test_mean", "all", None),
    ("concept_mean", "run", 20.0),
  ],
)
def test_options_match_independent_oracle(fx, selection, zscore, nc_min):
  """Every selection x normalisation x voxel-selection option gives the oracle's RDMs, stimuli and
  voxel counts, for each subject and a single-column ROI and a union ROI (LOC = lLOC | rLOC)."""
  rois = {"V1": ("V1",), "LOC": ("lLOC", "rLOC"), "IT": ("IT",)}
  if selection == "test_mean":  # 2 test images only: an RDM needs 3 rows
    with pytest.raises(things.ThingsFormatError, match=r"StimulusMetadata\.csv.*'test_mean' gives 2 stimuli"):
      things.load_things_fmri(fx["betas_dir"], rois=rois, selection=selection)
    return
  brain = things.load_things_fmri(fx["betas_dir"], rois=rois, selection=selection, zscore=zscore, nc_testset_min=nc_min)
  assert f"selection={selection}" in brain.preparation and f"zscore={zscore}" in brain.preparation
  for s, subject in enumerate(fx["subjects"]):
    for r, (roi, cols) in enumerate(rois.items()):
      want, names, n_vox = _oracle(fx, subject, cols, selection=selection, zscore=zscore, nc_min=nc_min)
      assert list(brain.stimuli) == names
      assert brain.n_voxels[s, r] == n_vox
      np.testing.assert_allclose(brain.rdm_vectors[s, r], want, atol=1e-10, err_msg=f"{subject} {roi}")
  if selection == "first_exemplar":
    np.testing.assert_array_equal(brain.runs[0], fx["expected_runs"]["sub-01"])
  else:
    assert (brain.runs == -1).all()
    with pytest.raises(ValueError, match="cross-run pairs need.*Use pair set 'all'"):
      things.cross_run_mask(brain.runs)


def test_test_mean_on_a_fixture_with_more_test_images(tmp_path):
  """test_mean with 3 test images shown in each of the 3 sessions: items sorted by concept, each the mean
  of its 3 repetitions (oracle: pandas)."""
  fx3 = write_fixture(tmp_path, test_concepts=("candelabra", "ant", "mango"))
  brain = things.load_things_fmri(fx3["betas_dir"], rois={"V1": ("V1",)}, selection="test_mean")
  for s, subject in enumerate(fx3["subjects"]):
    want, names, _ = _oracle(fx3, subject, ("V1",), selection="test_mean")
    assert list(brain.stimuli) == names and [n.rsplit("_", 1)[0] for n in names] == ["ant", "candelabra", "mango"]
    np.testing.assert_allclose(brain.rdm_vectors[s, 0], want, atol=1e-10)


def test_zscore_within_runs_differs_from_across_all(fx):
  """The options really change the RDMs (the fixture plants a run offset)."""
  rois = {"V1": ("V1",)}
  a = things.load_things_fmri(fx["betas_dir"], rois=rois).rdm_vectors
  b = things.load_things_fmri(fx["betas_dir"], rois=rois, zscore="run").rdm_vectors
  assert np.abs(a - b).max() > 1e-3
  with pytest.raises(ValueError, match="unknown zscore mode 'voxel'"):
    things.load_things_fmri(fx["betas_dir"], rois=rois, zscore="voxel")
