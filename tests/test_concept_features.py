"""selection=concept_mean: model features averaged over the same exemplar images as the brain responses, and
cross-run pairs of averaged rows.

Oracles: hand-written expectations on small tables, the fixture's StimulusMetadata read with pandas and
double loops over pairs, and numpy means of per-image features.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import things_fixture
from PIL import Image

from brainalign import features, models, pipeline, probe
from brainalign.configs import paper
from brainalign.data import images, prepare, things


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
  root = tmp_path_factory.mktemp("concepts")
  out = things_fixture.write_fixture(root / "fmri")
  rng = np.random.default_rng(0)
  md = out["stimulus_metadata"]["sub-01"]
  for stim in sorted(set(md["stimulus"])):  # every exemplar and test image, non-square like THINGS
    path = root / "images" / "object_images" / stim.rsplit("_", 1)[0] / stim
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
  out["images_dir"] = root / "images"
  return out


def _hand_metadata():
  """Two sessions x runs 1/2; concepts a, b (train), test image of b shown in both sessions."""
  return pd.DataFrame(
    {
      "trial_type": ["train", "test", "train", "train", "test", "train"],
      "session": [1, 1, 1, 2, 2, 2],
      "run": [1, 2, 1, 1, 1, 2],
      "subject_id": [1] * 6,
      "trial_id": range(6),
      "stimulus": ["b_02n.jpg", "b_13s.jpg", "a_02n.jpg", "a_01b.jpg", "b_13s.jpg", "b_01b.jpg"],
      "concept": ["b", "b", "a", "a", "b", "b"],
    }
  )


def test_selection_lists_exemplar_images_and_trial_runs_hand_case():
  """concept_mean: every exemplar of each concept, item by item, and the runs of all its trials; test_mean: the
  one test image (repetitions are the same image) with the runs of its repetitions; first_exemplar: one each."""
  md = _hand_metadata()
  cm = things.select_trials(md, "concept_mean")
  names, items = cm.exemplar_images()
  assert names == ("a_01b.jpg", "a_02n.jpg", "b_01b.jpg", "b_02n.jpg") and items.tolist() == [0, 0, 1, 1]
  np.testing.assert_array_equal(cm.trial_run_labels(), [[101, 201], [101, 202]])
  np.testing.assert_array_equal(cm.trial_run_labels(width=3), [[101, 201, -1], [101, 202, -1]])
  tm = things.select_trials(md, "test_mean")
  assert tm.exemplar_images()[0] == ("b_13s.jpg",) and tm.exemplar_images()[1].tolist() == [0]
  np.testing.assert_array_equal(tm.trial_run_labels(), [[102, 201]])
  first = things.select_trials(md, "first_exemplar")
  assert first.exemplar_images()[0] == ("a_01b.jpg", "b_01b.jpg")
  np.testing.assert_array_equal(first.trial_run_labels(), [[201], [202]])


def test_cross_run_mask_of_averaged_rows_hand_case():
  """A pair of averaged rows is dropped when ANY trial of one row shared a run with any trial of the other, for
  ANY subject (worked out by hand below); [S, n] labels are the case K = 1; a row without labels is an error."""
  runs = np.array(
    [
      [[101, 102], [103, -1], [102, 104], [105, 106]],  # subject 0
      [[201, -1], [201, 202], [203, -1], [204, 205]],
    ]
  )  # subject 1
  # (0,1): subject 1 shares 201 -> drop; (0,2): subject 0 shares 102 -> drop; all others share nothing
  np.testing.assert_array_equal(things.cross_run_mask(runs), [False, False, True, True, True, True])
  single = np.array([[1, 2, 1, 3], [5, 5, 6, 7]])
  np.testing.assert_array_equal(things.cross_run_mask(single), things.cross_run_mask(single[..., None]))
  np.testing.assert_array_equal(things.cross_run_mask(single), [False, False, True, True, True, True])
  with pytest.raises(ValueError, match="no run label for 1 of 4 stimuli"):
    things.cross_run_mask(np.where(np.arange(4) == 2, -1, runs[..., 0])[:, :, None].repeat(2, axis=2))


def _oracle_runs(fx, subject):
  """{concept: set of session*100+run of its train trials} and {concept: sorted exemplar names}, with pandas."""
  md = pd.read_csv(fx["files"][subject].stimulus_metadata)
  train = md[md.trial_type == "train"]
  runs = {c: set((g.session * 100 + g.run).tolist()) for c, g in train.groupby("concept")}
  names = {c: sorted(set(g.stimulus)) for c, g in train.groupby("concept")}
  return runs, names


@pytest.mark.parametrize("subjects", [("sub-01",), ("sub-01", "sub-03"), ("sub-01", "sub-02", "sub-03")])
def test_concept_mean_exemplars_and_cross_run_pairs_on_the_fixture(fx, subjects):
  """On the fixture files: the exemplar list of every concept and the runs of its trials equal the metadata's
  (pandas), and the cross-run set equals a double loop over concept pairs requiring disjoint run sets for every
  subject. With all three subjects no pair survives (12 concepts, 3 sessions x 2 runs), and pair_set says so."""
  brain = things.load_things_fmri(fx["betas_dir"], subjects, rois={"V1": ("V1",)}, selection="concept_mean")
  concepts = list(fx["concepts"])
  assert list(brain.concepts) == concepts
  runs = [_oracle_runs(fx, s)[0] for s in subjects]
  names = _oracle_runs(fx, subjects[0])[1]
  ex, rows = brain.exemplar_images()
  assert list(ex) == [n for c in concepts for n in names[c]]
  assert [concepts[r] for r in rows] == [c for c in concepts for _ in names[c]]
  item_runs = brain.item_runs()
  for s in range(len(subjects)):
    for i, c in enumerate(concepts):
      got = item_runs[s, i]
      assert set(got[got >= 0].tolist()) == runs[s][c] and (got >= 0).sum() == 3
  want = [all(not (r[a] & r[b]) for r in runs) for k, a in enumerate(concepts) for b in concepts[k + 1 :]]
  got = things.cross_run_mask(item_runs)
  np.testing.assert_array_equal(got, want)
  if len(subjects) == 1:
    assert 0 < got.sum() < got.size
  if not any(want):
    with pytest.raises(ValueError, match="cross_run pair set is empty"):
      probe.pair_set("cross_run", len(concepts), item_runs)
  else:
    i, j = probe.pair_set("cross_run", len(concepts), item_runs)
    assert len(i) == sum(want)


def test_segment_mean_equals_numpy_group_means():
  """segment_mean([S, m, d], segments [m]) row i = numpy mean of the images with segment i; gaps are an error."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 7, 5)).astype(np.float32)
  seg = np.array([1, 0, 1, 2, 0, 1, 2])
  want = np.stack([x[:, seg == i].mean(axis=1) for i in range(3)], axis=1)
  np.testing.assert_allclose(np.asarray(features.segment_mean(jnp.asarray(x), seg, 3)), want, rtol=1e-6)
  with pytest.raises(ValueError, match="each at least once"):
    features.segment_mean(jnp.asarray(x), np.array([0, 0, 2, 2, 0, 2, 2]), 3)


def _config(fx, tmp_path, concept_features):
  c = paper.get_config("tiny")
  c.brain.betas_dir, c.brain.images_dir = str(fx["betas_dir"]), str(fx["images_dir"])
  c.brain.cache_dir, c.brain.prepared = str(tmp_path / "cache"), "off"
  c.brain.selection = "concept_mean"
  c.eval.resolutions, c.eval.pair_sets = (32,), ("all",)
  c.eval.concept_features = concept_features
  return c


def test_probe_features_are_means_over_each_concepts_exemplar_images(fx, tmp_path):
  """concept_features=mean: the probe loads all 36 exemplar images (12 concepts x 3), and the extractor's row i
  is the numpy mean of the features of the images whose file name belongs to concept i (oracle: per-image
  features grouped by name); first_exemplar: the 12 `_01b` images only, one row each."""
  mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
  ps = probe.load_probe(_config(fx, tmp_path, "mean"), mean=mean, std=std)
  concepts = list(fx["concepts"])
  names = [n for c in concepts for n in _oracle_runs(fx, "sub-01")[1][c]]
  assert ps.images[32].shape == (36, 32, 32, 3)
  assert [concepts[k] for k in ps.segments] == [images.concept_of(n) for n in names]
  want_first = images.normalize(
    images.load_images(images.stimulus_paths(fx["images_dir"], names, "things"), 32), mean, std
  )
  np.testing.assert_array_equal(ps.images[32], want_first)

  model = models.CNN(conv_impl="im2col", conv_widths=(4, 8, 8), fc_width=16)
  init = lambda k: model.init(jax.random.key(k), jnp.zeros((1, 32, 32, 3)), train=False)
  variables = jax.tree.map(lambda *v: jnp.stack(v), init(0), init(1))  # 2 seeds
  extract = features.make_extractor(model, bn_mode="running", batch_size=16)
  per_image = extract(variables["params"], variables["batch_stats"], ps.images[32])
  averaged = extract(variables["params"], variables["batch_stats"], ps.images[32], segments=ps.segments)
  for layer, f in per_image.items():
    want = np.stack([f[:, [images.concept_of(n) == c for n in names]].mean(axis=1) for c in concepts], axis=1)
    assert averaged[layer].shape == (2, 12, f.shape[-1])
    np.testing.assert_allclose(averaged[layer], want, rtol=1e-5, atol=1e-6)

  first = probe.load_probe(_config(fx, tmp_path, "first_exemplar"), mean=mean, std=std)
  assert first.segments is None and first.images[32].shape[0] == 12
  np.testing.assert_array_equal(first.images[32], ps.images[32][[n.endswith("_01b.jpg") for n in names]])
  np.testing.assert_array_equal(first.brain.rdm_vectors, ps.brain.rdm_vectors)
  with pytest.raises(ValueError, match="concept_features must be one of"):
    probe.load_probe(_config(fx, tmp_path, "median"), mean=mean, std=std)


def test_prepare_cache_keeps_exemplars_and_trial_runs(fx, tmp_path):
  """The prepared cache round-trips the exemplar lists and trial runs; a cache written before they existed still
  serves first_exemplar (derived: one image and one run per row) but is refused for concept_mean."""
  for selection in ("concept_mean", "first_exemplar"):
    c = _config(fx, tmp_path, "mean").brain
    c.selection, c.prepared = selection, "auto"
    path, built = prepare.prepare(c, fx["betas_dir"], progress=False)
    loaded = prepare.load_brain(c, fx["betas_dir"])
    assert loaded.exemplar_images()[0] == built.exemplar_images()[0]
    np.testing.assert_array_equal(loaded.exemplar_images()[1], built.exemplar_images()[1])
    np.testing.assert_array_equal(loaded.item_runs(), built.item_runs())
    with np.load(path) as z:
      old = {k: z[k] for k in z.files if k not in ("trial_runs", "exemplars", "exemplar_items")}
    np.savez(path, **old)
    if selection == "concept_mean":
      with pytest.raises(prepare.StaleCacheError, match="without the exemplar lists"):
        prepare.load_brain(c, fx["betas_dir"])
    else:
      legacy = prepare.load_brain(c, fx["betas_dir"])
      np.testing.assert_array_equal(legacy.item_runs(), built.runs[..., None])
      assert legacy.exemplar_images()[0] == built.stimuli


def test_tiny_pipeline_with_per_seed_subsets_and_concept_means(fx, tmp_path):
  """End to end on the fixture files (paper config, tiny) with data.subset=per_seed, brain.selection=concept_mean
  and cross-run pairs of averaged rows (sub-01: 8 of 66 pairs): the saved features have one row per concept
  (their values: test_probe_features_are_means_over_each_concepts_exemplar_images); the cross-run rows count the
  pairs of things.cross_run_mask over the trial runs; every rho is finite; test accuracy is logged per seed."""
  c = _config(fx, tmp_path, "mean")
  c.rules, c.brain.subjects, c.brain.rois = ("bp",), ("sub-01",), ("V1", "IT")
  c.data.source, c.data.normalization, c.data.num_test = "fashion_mnist_demo", "train_set", 100
  c.data.subset = "per_seed"
  c.eval.pair_sets = ("all", "cross_run")
  tables = pipeline.run(c, str(tmp_path / "run"))
  a = tables["alignment"]
  with np.load(tmp_path / "run" / "features" / "bp" / "epoch_0002.npz") as z:
    assert z["32px/fc1"].shape == (len(c.seeds), 12, c.model.fc_width)
  brain = probe.load_brain(c.brain)[1]
  keep = things.cross_run_mask(brain.item_runs())
  assert set(a[a.pairs == "cross_run"].n_pairs) == {int(keep.sum())} and 0 < keep.sum() < keep.size
  assert set(a[a.pairs == "all"].n_pairs) == {66}
  assert np.isfinite(a.rho).all()
  tr = tables["training"]
  assert tr[tr.epoch > 0].test_accuracy.notna().all() and set(tr.seed) == set(c.seeds)
