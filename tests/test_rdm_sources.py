"""Brain data given as RDMs (brainalign.data.rdm_sources; config.brain.source='rdms').

Files are written in the test: .npz (square and condensed), MATLAB .mat in the 92-image struct format
(scipy.io.savemat), and rsatoolbox's own hdf5/pkl (if rsatoolbox is importable). Oracle: scipy pdist of
random patterns (the condensed order RDMs must come back in), and numpy means for session averaging.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.io
from PIL import Image
from scipy.spatial.distance import pdist, squareform

from brainalign import pipeline
from brainalign.configs import paper
from brainalign.data import rdm_sources, things

N = 9
STIMULI = [f"img_{k:02d}.png" for k in range(N)]


def _vectors(n_rdm, seed=0):
  rng = np.random.default_rng(seed)
  return [pdist(rng.normal(size=(N, 5 + k)), "correlation") for k in range(n_rdm)]


def _stim_file(tmp_path, names=STIMULI):
  p = tmp_path / "stimuli.txt"
  p.write_text("# stimulus order\n" + "\n".join(names) + "\n\n")
  return p


def test_npz_square_and_condensed(tmp_path):
  """.npz with square [S, R, n, n] RDMs and a stimulus list, and with condensed [S, R, P] plus stimuli and runs
  inside: rdm_vectors equal the pdist vectors; subject/ROI selection and order follow the request."""
  v = np.array(_vectors(6)).reshape(2, 3, -1)
  square = np.stack([[squareform(v[s, r]) for r in range(3)] for s in range(2)])
  path = tmp_path / "square.npz"
  np.savez(path, rdms=square, subjects=np.array(["s1", "s2"]), rois=np.array(["A", "B", "C"]))
  brain = rdm_sources.load_rdms(path, stimuli_file=_stim_file(tmp_path))
  np.testing.assert_allclose(brain.rdm_vectors, v, atol=1e-15)
  assert brain.subjects == ("s1", "s2") and brain.rois == ("A", "B", "C") and brain.stimuli == tuple(STIMULI)
  assert (brain.runs == -1).all() and (brain.n_voxels == -1).all()
  picked = rdm_sources.load_rdms(path, stimuli_file=_stim_file(tmp_path), subjects=("s2",), rois=("C", "A"))
  np.testing.assert_allclose(picked.rdm_vectors[0], v[1, [2, 0]], atol=1e-15)

  runs = np.array([[1, 1, 1, 2, 2, 2, 3, 3, 3], [1, 2, 3] * 3])
  path2 = tmp_path / "condensed.npz"
  np.savez(
    path2, rdms=v, subjects=np.array(["s1", "s2"]), rois=np.array(["A", "B", "C"]), stimuli=np.array(STIMULI), runs=runs
  )
  b2 = rdm_sources.load_rdms(path2)
  np.testing.assert_array_equal(b2.rdm_vectors, v)
  np.testing.assert_array_equal(b2.runs, runs)
  # pairs (i<j) in different runs for both subjects: hand count = 9*8/2 - same-run pairs of s1 (9) - of s2 (9)
  # + pairs same in both (0: s1 and s2 groupings share no pair)
  assert things.cross_run_mask(b2.runs).sum() == 36 - 9 - 9


def _write_92_format(path, vectors, names, *, condensed=False):
  """A struct array RDMs (1, 2, 2) with fields RDM, name, color, like 92_brainRDMs.mat."""
  st = np.zeros((1, 2, 2), dtype=[("RDM", object), ("name", object), ("color", object)])
  k = 0
  for subj in range(2):
    for ses in range(2):
      st[0, subj, ses]["RDM"] = vectors[k][None, :] if condensed else squareform(vectors[k])
      st[0, subj, ses]["name"] = names[k]
      st[0, subj, ses]["color"] = np.array([[0.0, 0.0, 1.0]])
      k += 1
  scipy.io.savemat(path, {"RDMs": st})


def test_mat_92_image_format(tmp_path):
  """The 92-image .mat layout: 'hIT | BE | Session: 1' names; sessions averaged per subject (oracle: numpy
  mean) or kept separate; condensed RDM fields work too."""
  vec = _vectors(4, seed=3)
  names = ["hIT | BE | Session: 1", "hIT | BE | Session: 2", "hIT | JC | Session: 1", "hIT | JC | Session: 2"]
  path = tmp_path / "92_brainRDMs.mat"
  _write_92_format(path, vec, names)
  mat = scipy.io.loadmat(path)
  assert mat["RDMs"].shape == (1, 2, 2) and set(mat["RDMs"].dtype.names) == {"RDM", "name", "color"}
  brain = rdm_sources.load_rdms(path, stimuli_file=_stim_file(tmp_path))
  assert brain.subjects == ("BE", "JC") and brain.rois == ("hIT",)
  np.testing.assert_allclose(brain.rdm_vectors[0, 0], (vec[0] + vec[1]) / 2, atol=1e-15)
  np.testing.assert_allclose(brain.rdm_vectors[1, 0], (vec[2] + vec[3]) / 2, atol=1e-15)
  sep = rdm_sources.load_rdms(path, stimuli_file=_stim_file(tmp_path), sessions="separate")
  # MATLAB's linear (column-major) order over the (1, subject, session) array: subject varies fastest
  assert sep.subjects == ("BE | Session: 1", "JC | Session: 1", "BE | Session: 2", "JC | Session: 2")
  np.testing.assert_allclose(sep.rdm_vectors[:, 0], np.array(vec)[[0, 2, 1, 3]], atol=1e-15)
  path2 = tmp_path / "condensed.mat"
  _write_92_format(path2, vec, names, condensed=True)
  np.testing.assert_allclose(
    rdm_sources.load_rdms(path2, stimuli_file=_stim_file(tmp_path)).rdm_vectors, brain.rdm_vectors, atol=1e-15
  )
  with pytest.raises(rdm_sources.RdmFormatError, match=r"no stimulus names.*config\.brain\.stimuli_file"):
    rdm_sources.load_rdms(path)


@pytest.mark.parametrize("suffix", [".hdf5", ".pkl"])
def test_rsatoolbox_files(tmp_path, suffix):
  """rsatoolbox RDMs saved with its own writer come back per (subject, roi) descriptor, in pdist order
  (checked against rsatoolbox's own get_matrices), with stimulus names from the pattern descriptor."""
  rsa_rdm = pytest.importorskip("rsatoolbox.rdm")
  vec = np.array(_vectors(4, seed=5))
  rdms = rsa_rdm.RDMs(
    vec,
    dissimilarity_measure="correlation",
    rdm_descriptors={"subject": ["a", "a", "b", "b"], "roi": ["V1", "IT", "V1", "IT"]},
    pattern_descriptors={"stimulus": STIMULI},
  )
  path = tmp_path / f"rdms{suffix}"
  rdms.save(str(path), file_type=suffix[1:])
  brain = rdm_sources.load_rdms(path)
  assert brain.subjects == ("a", "b") and brain.rois == ("V1", "IT") and brain.stimuli == tuple(STIMULI)
  mats = rdms.get_matrices()
  for k, (s, r) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
    np.testing.assert_allclose(brain.rdm_vectors[s, r], vec[k], atol=1e-12)
    np.testing.assert_allclose(squareform(brain.rdm_vectors[s, r]), mats[k], atol=1e-12)
  with pytest.raises(rdm_sources.RdmFormatError, match=r"differ from .*stimuli\.txt"):
    rdm_sources.load_rdms(path, stimuli_file=_stim_file(tmp_path, STIMULI[::-1]))


def test_rdm_errors_name_file_and_field(tmp_path):
  """Asymmetric / non-zero diagonal / NaN RDMs, size vs stimulus list, missing arrays, unknown subject,
  duplicate stimulus names, unknown suffix: each error names the file and the problem."""
  v = np.array(_vectors(1)).reshape(1, 1, -1)
  sq = squareform(v[0, 0])[None, None]
  base = dict(subjects=np.array(["s"]), rois=np.array(["V1"]))
  stim = _stim_file(tmp_path)
  cases = []
  bad = sq.copy()
  bad[0, 0, 0, 1] += 0.5
  cases.append((dict(rdms=bad, **base), r"bad\.npz.*rdms\[0, 0\].*not symmetric"))
  bad = sq.copy()
  bad[0, 0, 2, 2] = 0.3
  cases.append((dict(rdms=bad, **base), r"bad\.npz.*diagonal is not zero"))
  bad = sq.copy()
  bad[0, 0, 1, 2] = bad[0, 0, 2, 1] = np.nan
  cases.append((dict(rdms=bad, **base), r"bad\.npz.*non-finite"))
  cases.append((dict(rdms=sq[..., :8, :8], **base), r"bad\.npz.*\(s, V1\) has 8 rows.*stimulus list has 9"))
  cases.append((dict(rdms=sq), r"bad\.npz.*missing array\(s\) \['subjects', 'rois'\]"))
  cases.append((dict(rdms=v[..., :-1], **base), r"bad\.npz.*condensed RDM of length 35"))
  for arrays, pattern in cases:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(rdm_sources.RdmFormatError, match=pattern):
      rdm_sources.load_rdms(tmp_path / "bad.npz", stimuli_file=stim)
  np.savez(tmp_path / "ok.npz", rdms=sq, **base)
  with pytest.raises(rdm_sources.RdmFormatError, match=r"ok\.npz.*subject\(s\) \['sub-01'\] not in the file.*\['s'\]"):
    rdm_sources.load_rdms(tmp_path / "ok.npz", stimuli_file=stim, subjects=("sub-01",))
  with pytest.raises(rdm_sources.RdmFormatError, match=r"dup\.txt.*repeated: \['img_00\.png'\]"):
    (tmp_path / "dup.txt").write_text("\n".join(STIMULI + STIMULI[:1]))
    rdm_sources.load_rdms(tmp_path / "ok.npz", stimuli_file=tmp_path / "dup.txt")
  (tmp_path / "x.csv").write_text("1")
  with pytest.raises(rdm_sources.RdmFormatError, match=r"x\.csv.*unknown RDM file type '\.csv'"):
    rdm_sources.load_rdms(tmp_path / "x.csv", stimuli_file=stim)
  with pytest.raises(ValueError, match="cross-run pairs need"):
    things.cross_run_mask(rdm_sources.load_rdms(tmp_path / "ok.npz", stimuli_file=stim).runs)


def test_rdms_source_runs_through_the_pipeline(tmp_path):
  """config.brain.source='rdms' with a .mat file, a stimulus list and a flat image folder runs the study
  pipeline: every alignment row is labelled data='rdms' with the file's subjects/ROIs, and equals scipy's
  Spearman between pdist(saved features) and the given RDM."""
  from scipy import stats

  vec = _vectors(4, seed=7)
  _write_92_format(tmp_path / "brain.mat", vec, ["hIT | BE | S1", "hIT | BE | S2", "EVC | JC | S1", "hIT | JC | S1"])
  rng = np.random.default_rng(0)
  (tmp_path / "imgs").mkdir()
  for name in STIMULI:
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "imgs" / name)
  c = paper.get_config("tiny")
  c.rules = ("random",)
  c.data.source, c.data.normalization, c.data.num_test = "fashion_mnist_demo", "train_set", 100
  c.brain.source, c.brain.rdms_path = "rdms", str(tmp_path / "brain.mat")
  c.brain.stimuli_file, c.brain.images_dir = str(_stim_file(tmp_path)), str(tmp_path / "imgs")
  c.brain.subjects, c.brain.rois = ("BE", "JC"), ("hIT",)
  c.eval.resolutions, c.eval.pair_sets = (32,), ("all",)
  pipeline.run(c, str(tmp_path / "run"))
  a = pd.read_csv(tmp_path / "run" / "results" / "alignment.csv")
  assert set(a.data) == {"rdms"} and set(a.subject) == {"BE", "JC"} and set(a.roi) == {"hIT"}
  with np.load(tmp_path / "run" / "features" / "random" / "epoch_0000.npz") as z:
    feats = z["32px/conv1"]
  brain = {"BE": (vec[0] + vec[1]) / 2, "JC": vec[3]}
  for k, seed in enumerate(c.seeds):
    model = pdist(feats[k].astype(np.float64), "correlation")
    for subject, rdm in brain.items():
      got = a[(a.seed == seed) & (a.layer == "conv1") & (a.subject == subject)].rho.item()
      np.testing.assert_allclose(got, stats.spearmanr(model, rdm).statistic, atol=1e-5)
