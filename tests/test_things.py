"""Tests of the THINGS-fMRI writer (brainalign.data.things_writer) and loader (brainalign.data.things).

Oracles: the format description (docs/data-formats.md §4–§6, §8–§10), pandas' own reader
(``pd.read_hdf`` / ``pd.read_csv``), NumPy/SciPy reference computations and brute-force loops.
"""

from __future__ import annotations

import csv
import pathlib
import pickle
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import spearmanr

from brainalign.data import things
from brainalign.data import things_writer as tw

try:
  from tests.things_fixture import write_fixture
except ImportError:  # tests/ not importable as a package
  from things_fixture import write_fixture

ThingsFormatError = things.ThingsFormatError


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
  """The v2 fixture with public file names."""
  return write_fixture(tmp_path_factory.mktemp("things_v2"))


@pytest.fixture(scope="module")
def brain(fx):
  """load_things_fmri on the v2 fixture, all six study ROIs."""
  return things.load_things_fmri(fx["betas_dir"])


def _copy_betas(fx, tmp_path) -> pathlib.Path:
  dst = tmp_path / "betas_csv"
  shutil.copytree(fx["betas_dir"], dst)
  return dst


def _oracle_rdm_vector(fx, subject, columns):
  """Independent path: pandas reads the whole table; label-based trial selection; numpy z-score; pdist."""
  df = pd.read_hdf(fx["files"][subject].responses)
  vox = pd.read_csv(fx["files"][subject].voxel_metadata)
  rows = vox.index[(vox[list(columns)] == 1).any(axis=1)]
  data = df.drop(columns="voxel_id").loc[rows]
  z = (data - data.mean(axis=1).to_numpy()[:, None]) / data.std(axis=1, ddof=0).to_numpy()[:, None]
  patterns = z[list(fx["expected_trial_ids"][subject])].to_numpy().T  # select by trial_id LABEL
  return pdist(patterns, "correlation")


# --------------------------------------------------------------------------------------------------
# Writer: the files have exactly the published structure.


def test_hdf5_layout_matches_spec(fx):
  """The written ResponseData.h5 has the nodes, dtypes, shapes and attributes of docs/data-formats.md §4.2
  (oracle: the spec's node table, checked with h5py) and pd.read_hdf reads back the same table."""
  subject = "sub-02"
  path, resp = fx["files"][subject].responses, fx["responses"][subject]
  n_vox, n_trials = resp.shape
  with h5py.File(path, "r") as f:
    assert list(f.keys()) == ["ResponseData"]
    assert f.attrs["CLASS"] == b"GROUP"
    assert f.attrs["PYTABLES_FORMAT_VERSION"] == b"2.1"
    assert f.attrs["VERSION"] == b"1.0"
    title = f.attrs["TITLE"]
    assert isinstance(title, h5py.Empty) or title in (b"", "")
    g = f["ResponseData"]
    assert isinstance(g, h5py.Group)
    assert sorted(g.keys()) == ["axis0", "axis1", "block0_items", "block0_values", "block1_items", "block1_values"]
    expected_group_attrs = dict(
      pandas_type=b"frame",
      ndim=2,
      nblocks=2,
      encoding=b"UTF-8",
      errors=b"strict",
      axis0_variety=b"regular",
      axis1_variety=b"regular",
      block0_items_variety=b"regular",
      block1_items_variety=b"regular",
    )
    for key, value in expected_group_attrs.items():
      assert g.attrs[key] == value, key
    for name in g:
      assert g[name].attrs["transposed"] == 1, name
    for name in ("axis1", "block0_values", "block1_items", "block1_values"):
      assert g[name].attrs["FLAVOR"] == b"numpy", name
    for name in ("axis0", "block0_items"):  # VLArrays of pickled objects
      assert g[name].shape == (1,) and g[name].dtype == object
      assert g[name].attrs["PSEUDOATOM"] == b"object" and g[name].attrs["kind"] == b"object"
    axis0 = pickle.loads(g["axis0"][0].tobytes())  # trusted test file
    assert list(axis0) == ["voxel_id", *range(n_trials)]
    assert list(pickle.loads(g["block0_items"][0].tobytes())) == list(range(n_trials))
    assert g["axis1"].dtype == np.int64 and g["axis1"].shape == (n_vox,)
    assert g["axis1"].attrs["kind"] == b"integer"
    np.testing.assert_array_equal(g["axis1"][()], np.arange(n_vox))
    values = g["block0_values"]
    assert values.dtype == np.float64 and values.shape == (n_vox, n_trials)
    assert values.chunks is None and values.compression is None
    np.testing.assert_array_equal(values[()], resp)
    assert g["block1_items"].dtype == np.dtype("S8") and g["block1_items"].shape == (1,)
    assert g["block1_items"].attrs["kind"] == b"string"
    assert g["block1_items"][()].tolist() == [b"voxel_id"]
    assert g["block1_values"].dtype == np.int64 and g["block1_values"].shape == (n_vox, 1)
    np.testing.assert_array_equal(g["block1_values"][:, 0], np.arange(n_vox))

  df = pd.read_hdf(path)  # no key: a single stored object
  assert df.shape == (n_vox, n_trials + 1)
  assert list(df.columns) == ["voxel_id", *range(n_trials)]
  np.testing.assert_array_equal(df["voxel_id"].to_numpy(), np.arange(n_vox))
  np.testing.assert_array_equal(df.drop(columns="voxel_id").to_numpy(), resp)


def test_csv_files_exact(fx):
  """CSV headers are exactly the published ones (stimulus header string of §5; 13 + 29 + 180 voxel
  columns of §6, incl. the two newline Glasser names, parsed with csv and pandas); UTF-8, LF only,
  trailing newline, no index column."""
  files = fx["files"]["sub-01"]
  raw = files.stimulus_metadata.read_bytes()
  assert b"\r" not in raw and raw.endswith(b"\n")
  lines = raw.decode("utf-8").split("\n")
  assert lines[0] == "trial_type,session,run,subject_id,trial_id,stimulus,concept"
  assert len(lines) == 1 + 42 + 1  # header, 42 trials, empty string after the trailing newline

  raw = files.voxel_metadata.read_bytes()
  assert b"\r" not in raw and raw.endswith(b"\n")
  expected = [*tw.LEADING_COLUMNS, *tw.ROI_COLUMNS, *tw.GLASSER_COLUMNS]
  assert len(tw.LEADING_COLUMNS) == 13 and len(tw.ROI_COLUMNS) == 29 and len(tw.GLASSER_COLUMNS) == 180
  assert len(expected) == 222 and len(set(expected)) == 222
  with open(files.voxel_metadata, newline="", encoding="utf-8") as fh:
    header = next(csv.reader(fh))
  assert header == expected
  assert "glasser-p9-\n46v" in header and "glasser-a9-\n46v" in header
  df = things.read_voxel_metadata(files.voxel_metadata)
  assert list(df.columns) == expected and len(df) == fx["n_vox"]["sub-01"]
  assert df["glasser-p9-\n46v"].isin([0, 1]).all()


def test_voxel_metadata_properties(fx):
  """make_voxel_metadata follows §6/§9.3: voxel_id = row, constant subject_id, unique C-ordered
  coordinates, nc_testset in 0..100, some prf-* exactly 0, int 0/1 ROI/Glasser masks, ROI blocks of
  the requested sizes, lLOC and rLOC disjoint, some all-zero ROI column, IT voxels in IT's parcels."""
  for subject in fx["subjects"]:
    vox = fx["voxel_metadata"][subject]
    n = len(vox)
    np.testing.assert_array_equal(vox["voxel_id"], np.arange(n))
    assert vox["subject_id"].nunique() == 1
    xyz = vox[["voxel_x", "voxel_y", "voxel_z"]].to_numpy()
    assert len(np.unique(xyz, axis=0)) == n
    assert (np.lexsort(xyz.T[::-1]) == np.arange(n)).all()  # C order over (x, y, z)
    assert vox["nc_testset"].between(0, 100).all()
    assert (vox["prf-eccentricity"] == 0).any() and (vox["prf-eccentricity"] != 0).any()
    masks = vox[list(tw.ROI_COLUMNS) + list(tw.GLASSER_COLUMNS)]
    assert all(pd.api.types.is_integer_dtype(t) for t in masks.dtypes)
    assert masks.isin([0, 1]).all().all()
    for roi, size in fx["roi_sizes"][subject].items():
      assert vox[roi].sum() == size
    assert not ((vox["lLOC"] == 1) & (vox["rLOC"] == 1)).any()
    assert (vox[list(tw.ROI_COLUMNS)].sum() == 0).any()
    assert (vox[list(tw.GLASSER_COLUMNS)].sum(axis=1) <= 1).all()
    it = vox["IT"] == 1
    it_parcels = vox.loc[it, list(tw._IT_GLASSER)].sum(axis=1)
    assert (it_parcels == 1).all()
  with pytest.raises(ValueError, match="IT"):
    tw.make_voxel_metadata(1, {"IT": 2}, 1, seed=0, release="v1")


def test_design_properties(fx):
  """make_design follows §2/§9.2: trial_id = row number; rows sorted by (session, run); each session
  shows every train concept once with one exemplar number, spread evenly over runs; each test image
  once per session, never first/last in a run; all three suffix letters; sub-01 and sub-02 present the
  `_01` images in the same runs and order, sub-03 not; the same arguments give the same frame."""
  concepts = set(fx["concepts"])
  for subject in fx["subjects"]:
    md = fx["stimulus_metadata"][subject]
    np.testing.assert_array_equal(md["trial_id"], np.arange(len(md)))
    keys = list(zip(md["session"], md["run"]))
    assert keys == sorted(keys)
    train = md[md["trial_type"] == "train"]
    for _, grp in train.groupby("session"):
      assert sorted(grp["concept"]) == sorted(concepts)
      assert grp["stimulus"].str.extract(r"_(\d\d)[a-z]\.jpg$")[0].nunique() == 1
      assert (grp.groupby("run").size() == len(concepts) // 2).all()
    test = md[md["trial_type"] == "test"]
    assert (test.groupby("stimulus").size() == 3).all() and test["stimulus"].nunique() == 2
    assert set(test["stimulus"]).isdisjoint(train["stimulus"])
    assert (test["stimulus"].str.extract(r"_(\d\d)")[0].astype(int) >= 13).all()
    for (_, _), run in md.groupby(["session", "run"]):
      types = list(run["trial_type"])
      assert types[0] == "train" and types[-1] == "train" and "test" in types
    assert set(md["stimulus"].str[-5]) == {"b", "n", "s"}
    assert (md["stimulus"].str.rsplit("_", n=1).str[0] == md["concept"]).all()

  def first_order(subject):
    md = fx["stimulus_metadata"][subject]
    sel = md[md["stimulus"].str.endswith("_01b.jpg")]
    return list(zip(sel["run"], sel["concept"]))

  assert first_order("sub-01") == first_order("sub-02")
  assert first_order("sub-01") != first_order("sub-03")
  kwargs = dict(subject_id=1, n_sessions=2, n_runs=2, exemplar_for_session=(1, 2), test_concepts=("a",), order_seed=5)
  pd.testing.assert_frame_equal(tw.make_design(list("abcd"), **kwargs), tw.make_design(list("abcd"), **kwargs))
  assert tw.default_stimulus_name("yo-yo", 1) == "yo-yo_01b.jpg"
  assert tw.default_stimulus_name("dog", 14) == "dog_14n.jpg"
  assert tw.default_stimulus_name("dog", 13) == "dog_13s.jpg"


def test_write_subject_validates_and_is_atomic(fx, tmp_path, monkeypatch):
  """write_subject rejects mismatched shapes with a message naming both sizes; a failure while writing
  the HDF5 leaves neither a file under the final name nor a temporary file behind."""
  md, vox, resp = (fx[k]["sub-01"] for k in ("stimulus_metadata", "voxel_metadata", "responses"))
  with pytest.raises(ValueError, match=r"40 rows .* voxel_metadata has 39"):
    tw.write_subject(tmp_path, "sub-01", md, vox.iloc[:-1], resp)
  with pytest.raises(ValueError, match=r"42 columns .* stimulus_metadata has 41"):
    tw.write_subject(tmp_path, "sub-01", md.iloc[:-1], vox, resp)

  def broken_to_hdf(self, path, *args, **kwargs):
    pathlib.Path(path).write_bytes(b"\x89HDF partial")
    raise OSError("disk full")

  monkeypatch.setattr(pd.DataFrame, "to_hdf", broken_to_hdf)
  with pytest.raises(OSError, match="disk full"):
    tw.write_subject(tmp_path / "out", "sub-01", md, vox, resp)
  names = sorted(p.name for p in (tmp_path / "out").iterdir())
  assert names == ["sub-01_StimulusMetadata.csv", "sub-01_VoxelMetadata.csv"]


# --------------------------------------------------------------------------------------------------
# Loader building blocks.


def test_roi_union_loc(fx):
  """roi_voxel_rows for LOC is the sorted union lLOC ∪ rLOC (oracle: numpy set union of the masks)."""
  for subject in fx["subjects"]:
    vox = fx["voxel_metadata"][subject]
    rows = things.roi_voxel_rows(vox, things.ROI_DEFINITIONS["LOC"])
    expected = np.union1d(np.flatnonzero(vox["lLOC"] == 1), np.flatnonzero(vox["rLOC"] == 1))
    assert rows.dtype == np.int64
    np.testing.assert_array_equal(rows, expected)
    assert rows.size == vox["lLOC"].sum() + vox["rLOC"].sum()
    np.testing.assert_array_equal(things.roi_voxel_rows(vox, ("LO1 (prf)", "V1")), np.flatnonzero(vox["V1"] == 1))


def test_zscore_matches_hand_computation():
  """zscore standardises each voxel (row) across trials with ddof=0 (oracle: an explicit loop); a
  constant voxel is reported by its label."""
  x = np.array([[1.0, 2.0, 3.0, 6.0], [0.5, -0.5, 0.5, -0.5]])
  expected = np.empty_like(x)
  for i, row in enumerate(x):
    m = sum(row) / len(row)
    sd = (sum((v - m) ** 2 for v in row) / len(row)) ** 0.5
    expected[i] = [(v - m) / sd for v in row]
  np.testing.assert_allclose(things.zscore(x), expected, rtol=1e-12)
  np.testing.assert_allclose(things.zscore(x.T, axis=0), expected.T, rtol=1e-12)
  with pytest.raises(ThingsFormatError, match=r"f\.h5.*zero variance.*voxel_id.*17"):
    things.zscore(np.array([[1.0, 2.0], [3.0, 3.0]]), labels=[16, 17], source="f.h5")


def test_correlation_rdm_matches_scipy():
  """correlation_rdm equals scipy squareform(pdist(x, 'correlation')); a constant row raises."""
  x = np.random.default_rng(0).normal(size=(9, 13))
  rdm = things.correlation_rdm(x)
  assert rdm.dtype == np.float64 and rdm.shape == (9, 9)
  np.testing.assert_allclose(rdm, squareform(pdist(x, "correlation")), atol=1e-12)
  np.testing.assert_allclose(rdm[np.triu_indices(9, k=1)], pdist(x, "correlation"), atol=1e-12)
  x[3] = 1.0
  with pytest.raises(ValueError, match="rows 3"):
    things.correlation_rdm(x)


def test_read_voxel_rows_by_trial_id_label(fx):
  """read_voxel_rows returns block0_values rows in the requested order, columns = trial_id (oracle:
  pd.read_hdf with .loc on voxel rows and trial_id labels)."""
  path = fx["files"]["sub-01"].responses
  df = pd.read_hdf(path)
  rows = np.array([7, 2, 3, 30])
  got = things.read_voxel_rows(path, rows, n_trials=42)
  assert got.dtype == np.float64 and got.shape == (4, 42)
  tids = fx["expected_trial_ids"]["sub-01"]
  np.testing.assert_array_equal(got[:, tids], df.loc[rows, list(tids)].to_numpy())
  with pytest.raises(ThingsFormatError, match=r"sub-01_ResponseData\.h5.*42 trial columns, expected 43"):
    things.read_voxel_rows(path, rows, n_trials=43)
  with pytest.raises(ThingsFormatError, match=r"sub-01_ResponseData\.h5.*0…39"):
    things.read_voxel_rows(path, np.array([40]))


def test_read_voxel_rows_reads_only_requested_rows(fx, tmp_path):
  """Only the requested rows are read: in a file whose other rows are NaN, reading the finite rows
  succeeds (oracle: the values written); asking for a NaN row raises an error naming file and voxel."""
  md, vox, resp = (fx[k]["sub-03"] for k in ("stimulus_metadata", "voxel_metadata", "responses"))
  keep = np.array([2, 3, 4, 10, 20])
  poisoned = np.full_like(resp, np.nan)
  poisoned[keep] = resp[keep]
  files = tw.write_subject(tmp_path, "sub-03", md, vox, poisoned)
  np.testing.assert_array_equal(things.read_voxel_rows(files.responses, keep), resp[keep])
  np.testing.assert_array_equal(things.read_voxel_rows(files.responses, keep[::-1]), resp[keep[::-1]])
  with pytest.raises(ThingsFormatError, match=r"sub-03_ResponseData\.h5.*NaN.*voxel_id\(s\) 5\b"):
    things.read_voxel_rows(files.responses, np.array([4, 5]))


def test_read_voxel_rows_missing_dataset(tmp_path):
  """An HDF5 file without ResponseData/block0_values gives an error naming the file and dataset."""
  path = tmp_path / "other.h5"
  with h5py.File(path, "w") as f:
    f["data"] = np.zeros((2, 2))
  with pytest.raises(ThingsFormatError, match=r"other\.h5.*ResponseData/block0_values.*not found"):
    things.read_voxel_rows(path, np.array([0]))


# --------------------------------------------------------------------------------------------------
# Selection rule and full loading.


def test_selection_picks_first_exemplar_from_right_session(fx):
  """select_first_exemplars picks `<concept>_01b.jpg` for every concept in alphabetical concept order
  (camera before camera1 although 'camera1_01b.jpg' < 'camera_01b.jpg'), from session 3 / 2 / 1 for
  sub-01 / 02 / 03 (oracle: the fixture's design), with the trial_id of that trial."""
  for subject in fx["subjects"]:
    path = fx["files"][subject].stimulus_metadata
    sel = things.select_first_exemplars(things.read_stimulus_metadata(path), path=path)
    assert list(sel.columns) == ["trial_id", "stimulus", "concept", "session", "run"]
    assert tuple(sel["concept"]) == fx["concepts"]
    assert tuple(sel["stimulus"]) == fx["expected_stimuli"]
    assert (sel["session"] == fx["first_session"][subject]).all()
    np.testing.assert_array_equal(sel["trial_id"], fx["expected_trial_ids"][subject])
  assert fx["concepts"].index("camera") < fx["concepts"].index("camera1")


def test_selection_by_concept_not_prefix():
  """Trials are matched by concept, not by prefix: 'camera' must not take 'camera1_01b.jpg' (which
  sorts first) and 'ant' must not take 'anteater_…'; a first exemplar shown twice is an error."""
  md = pd.DataFrame(
    {
      "trial_type": ["train"] * 5 + ["test"],
      "session": [1] * 6,
      "run": [1] * 6,
      "subject_id": [1] * 6,
      "trial_id": range(6),
      "stimulus": [
        "camera_02n.jpg",
        "camera1_01b.jpg",
        "ant_03s.jpg",
        "anteater_01b.jpg",
        "camera_04n.jpg",
        "ant_01b.jpg",
      ],
    }
  )
  sel = things.select_first_exemplars(md)  # no concept column: derived with rsplit
  assert list(sel["concept"]) == ["ant", "anteater", "camera", "camera1"]
  assert list(sel["stimulus"]) == ["ant_03s.jpg", "anteater_01b.jpg", "camera_02n.jpg", "camera1_01b.jpg"]
  assert list(sel["trial_id"]) == [2, 3, 0, 1]  # the test trial ant_01b.jpg is never selected
  md.loc[4, "stimulus"] = "camera_02n.jpg"
  with pytest.raises(ThingsFormatError, match=r"my\.csv.*'camera_02n\.jpg'.*2 train trials"):
    things.select_first_exemplars(md, path="my.csv")


def test_load_matches_independent_oracle(fx, brain):
  """load_things_fmri's RDM vectors equal an independent computation (pd.read_hdf of the whole table,
  trial columns by trial_id label, numpy z-score across all trials, scipy pdist) for every subject and
  ROI; voxel counts, stimuli, concepts and runs equal the fixture's."""
  assert brain.subjects == fx["subjects"]
  assert brain.rois == tuple(things.ROI_DEFINITIONS)
  assert brain.stimuli == fx["expected_stimuli"] and brain.concepts == fx["concepts"]
  n = len(fx["concepts"])
  assert brain.rdm_vectors.shape == (3, 6, n * (n - 1) // 2) and brain.rdm_vectors.dtype == np.float64
  for s, subject in enumerate(fx["subjects"]):
    np.testing.assert_array_equal(brain.runs[s], fx["expected_runs"][subject])
    assert (brain.runs[s] // 100 == fx["first_session"][subject]).all()
    for r, (roi, columns) in enumerate(things.ROI_DEFINITIONS.items()):
      expected_n = sum(fx["roi_sizes"][subject][c] for c in columns)
      assert brain.n_voxels[s, r] == expected_n
      np.testing.assert_allclose(
        brain.rdm_vectors[s, r], _oracle_rdm_vector(fx, subject, columns), atol=1e-10, err_msg=f"{subject} {roi}"
      )
  assert brain.runs.dtype == np.int64 and brain.n_voxels.dtype == np.int64
  assert str(fx["betas_dir"]) in brain.source


def test_planted_structure_recovered(fx, brain):
  """The RDMs recover the planted signal (Spearman with the RDM of the z-scored noise-free signal > 0.8) and
  the planted run offset makes same-run pairs more similar than cross-run pairs in every subject."""
  iu = np.triu_indices(len(fx["concepts"]), k=1)
  for s, subject in enumerate(fx["subjects"]):
    vox = fx["voxel_metadata"][subject]
    tids = fx["expected_trial_ids"][subject]
    same_run = brain.runs[s][iu[0]] == brain.runs[s][iu[1]]
    for r, columns in enumerate(things.ROI_DEFINITIONS.values()):
      rows = things.roi_voxel_rows(vox, columns)
      clean = things.zscore(fx["clean"][subject][rows])[:, tids].T
      rho = spearmanr(brain.rdm_vectors[s, r], pdist(clean, "correlation"))[0]
      assert rho > 0.8, (subject, r, rho)
    mean_rdm = brain.rdm_vectors[s].mean(axis=0)
    assert mean_rdm[same_run].mean() < mean_rdm[~same_run].mean()


def test_cross_run_mask_matches_brute_force(brain):
  """cross_run_mask equals a double loop over i < j (triu order) requiring different (session, run) in
  every subject, on the fixture's runs and on random run labels."""
  rng = np.random.default_rng(3)
  for runs in (brain.runs, rng.integers(0, 4, size=(3, 15)), rng.integers(100, 103, size=(1, 7))):
    n = runs.shape[1]
    expected = [all(runs[s, i] != runs[s, j] for s in range(runs.shape[0])) for i in range(n) for j in range(i + 1, n)]
    mask = things.cross_run_mask(runs)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, expected)
  # sub-01 and sub-02 share the runs of the selected trials, so sub-03 alone decides beyond them.
  both = things.cross_run_mask(brain.runs[:2])
  np.testing.assert_array_equal(both, things.cross_run_mask(brain.runs[:1]))
  assert 0 < things.cross_run_mask(brain.runs).sum() < both.sum()


def test_v1_release(fx, tmp_path):
  """v1 files (no concept column, 41 voxel columns without IT): concept is derived from the stimulus,
  requesting IT gives an error naming the file and the missing column, and the other ROIs give the
  same RDMs as the v2 files with the same responses (oracle: the v2 load)."""
  v1 = write_fixture(tmp_path, release="v1")
  files = v1["files"]["sub-01"]
  assert files.stimulus_metadata.read_text().split("\n")[0] == "trial_type,session,run,subject_id,trial_id,stimulus"
  md = things.read_stimulus_metadata(files.stimulus_metadata)
  assert (md["concept"] == fx["stimulus_metadata"]["sub-01"]["concept"]).all()
  vox = things.read_voxel_metadata(files.voxel_metadata)
  assert list(vox.columns) == [*tw.LEADING_COLUMNS, *tw.V1_ROI_COLUMNS] and len(vox.columns) == 41
  with pytest.raises(ThingsFormatError, match=r"sub-01_VoxelMetadata\.csv.*\['IT'\].*v1.*'lLOC'"):
    things.load_things_fmri(v1["betas_dir"])
  rois = {k: v for k, v in things.ROI_DEFINITIONS.items() if k != "IT"}
  got = things.load_things_fmri(v1["betas_dir"], rois=rois)
  v2 = things.load_things_fmri(fx["betas_dir"], rois=rois)
  np.testing.assert_allclose(got.rdm_vectors, v2.rdm_vectors, atol=1e-12)
  assert got.stimuli == v2.stimuli


def test_reference_name_set_found(fx, tmp_path):
  """Files under the reference implementation's names are found (public names win when both exist)
  and load to the same RDMs."""
  ref = write_fixture(tmp_path, name_set="reference")
  found = things.find_subject_files(ref["betas_dir"], "sub-02")
  assert found.responses.name == "sub-02_task-things_voxel-wise-responses.h5"
  assert found.stimulus_metadata.name == "sub-02_task-things_stimulus-metadata.csv"
  assert found.voxel_metadata.name == "sub-02_task-things_voxel-metadata.csv"
  assert things.find_subject_files(tmp_path, "sub-02") == found  # derivatives root with betas_csv/
  got = things.load_things_fmri(ref["betas_dir"], subjects=("sub-02",), rois={"V1": ("V1",)})
  want = things.load_things_fmri(fx["betas_dir"], subjects=("sub-02",), rois={"V1": ("V1",)})
  np.testing.assert_allclose(got.rdm_vectors, want.rdm_vectors, atol=1e-12)
  assert things.find_subject_files(fx["betas_dir"], "sub-02").responses.name == "sub-02_ResponseData.h5"


# --------------------------------------------------------------------------------------------------
# Errors name the file and the problem.


def test_error_missing_file(fx, tmp_path):
  """A missing file: FileNotFoundError listing every path tried (both name sets), marking which exist."""
  betas = _copy_betas(fx, tmp_path)
  (betas / "sub-02_VoxelMetadata.csv").unlink()
  with pytest.raises(FileNotFoundError) as err:
    things.load_things_fmri(betas)
  msg = str(err.value)
  for name in (*tw.subject_file_names("sub-02"), *tw.subject_file_names("sub-02", "reference")):
    assert str(betas / name) in msg
  assert "sub-02_VoxelMetadata.csv (missing)" in msg and "sub-02_ResponseData.h5 (exists)" in msg


def test_error_missing_and_empty_roi(fx):
  """A missing ROI column names the file, the column and the available ROI columns; an ROI whose mask
  is all zero is an error naming the file and the ROI."""
  vox_path = str(fx["files"]["sub-01"].voxel_metadata)
  with pytest.raises(ThingsFormatError) as err:
    things.load_things_fmri(fx["betas_dir"], rois={"FFA": ("FFA",)})
  assert vox_path in str(err.value) and "['FFA']" in str(err.value) and "'lFFA'" in str(err.value)
  with pytest.raises(ThingsFormatError, match=r"sub-01_VoxelMetadata\.csv.*VO1.*no voxels"):
    things.load_things_fmri(fx["betas_dir"], rois={"VO1": ("VO1",)})


def test_error_nan_response(fx, tmp_path):
  """A NaN inside an ROI voxel's responses, or a constant ROI voxel, is an error naming the file and the
  voxel id."""
  betas = _copy_betas(fx, tmp_path)
  md, vox, resp = (fx[k]["sub-02"] for k in ("stimulus_metadata", "voxel_metadata", "responses"))
  bad = resp.copy()
  bad[8, 5] = np.nan  # voxel 8 is in V2 (rows 7..12)
  tw.write_subject(betas, "sub-02", md, vox, bad)
  with pytest.raises(ThingsFormatError, match=r"sub-02_ResponseData\.h5.*NaN.*voxel_id\(s\) 8\b"):
    things.load_things_fmri(betas, rois={"V2": ("V2",)})
  things.load_things_fmri(betas, rois={"V1": ("V1",)})  # other ROIs are unaffected
  bad = resp.copy()
  bad[9] = 0.25  # a constant voxel cannot be z-scored
  tw.write_subject(betas, "sub-02", md, vox, bad)
  with pytest.raises(ThingsFormatError, match=r"sub-02_ResponseData\.h5.*zero variance.*voxel_id\(s\) 9\b"):
    things.load_things_fmri(betas, rois={"V2": ("V2",)})


def test_error_truncated_hdf5(fx, tmp_path):
  """A truncated copy of ResponseData.h5 gives a ThingsFormatError naming the file (not a raw OSError)."""
  betas = _copy_betas(fx, tmp_path)
  path = betas / "sub-03_ResponseData.h5"
  size = path.stat().st_size
  with open(path, "r+b") as fh:
    fh.truncate(size // 2)
  with pytest.raises(ThingsFormatError, match=r"sub-03_ResponseData\.h5.*truncated or corrupt"):
    things.load_things_fmri(betas)


def test_error_bad_stimulus_metadata(fx, tmp_path):
  """trial_id not equal to the row number, a missing required column, and selected stimulus lists that
  differ between subjects each give an error naming the file and the field."""
  betas = _copy_betas(fx, tmp_path)
  path = betas / "sub-02_StimulusMetadata.csv"
  md = pd.read_csv(path)
  md.loc[[3, 4], "trial_id"] = [4, 3]
  md.to_csv(path, index=False)
  with pytest.raises(ThingsFormatError, match=r"sub-02_StimulusMetadata\.csv.*'trial_id'.*row 3"):
    things.read_stimulus_metadata(path)
  md.drop(columns="run").to_csv(path, index=False)
  with pytest.raises(ThingsFormatError, match=r"sub-02_StimulusMetadata\.csv.*\['run'\]"):
    things.read_stimulus_metadata(path)
  md = fx["stimulus_metadata"]["sub-02"].copy()
  md["stimulus"] = md["stimulus"].replace("dog_01b.jpg", "dog_01s.jpg")
  md.to_csv(path, index=False)
  with pytest.raises(ThingsFormatError, match=r"sub-02.*differ.*sub-01 'dog_01b\.jpg' vs sub-02 'dog_01s\.jpg'"):
    things.load_things_fmri(betas)
