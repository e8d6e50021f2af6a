"""Training data: the 8,000-image subset per seed or shared (docs/methods.md §4.0), and CIFAR-10 through TFDS.

Oracles: numpy permutations drawn here from the documented seeds, arrays built here (PNG-encoded with Pillow),
hashlib, and jax runs of each seed alone on its own images. tensorflow-datasets is NOT needed here: its API is
replaced by small fakes; tests/test_cifar10.py runs the real package on datasets in the real builder's layout.
"""

import functools
import hashlib
import io
import sys
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from brainalign import models, rules, train
from brainalign.configs import common, paper
from brainalign.data import training_sets as ts

BP = ml_collections.ConfigDict(
  dict(
    learning_rate=1e-3,
    weight_decay=1e-4,
    clip_norm=1.0,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    schedule="cosine_per_epoch",
    schedule_epochs=4,
    conv_init="torch_default",
    conv_bias=False,
  )
)
SMALL = dict(conv_widths=(4, 8, 8), fc_width=16)


def _data_config(**kw):
  c = common.base_config().data
  c.update(kw)
  return c


def _oracle_subset(seed, n_total, n):
  return np.sort(np.random.default_rng(seed).permutation(n_total)[:n])


# ---------------------------------------------------------------------------------------------- subsets


def test_per_seed_subsets_are_drawn_from_each_seed_and_reproducible():
  """Row s = sorted first n of numpy default_rng(seed_s).permutation(N); rows differ between seeds; the same
  seeds give the same rows; an empty seed list is an error."""
  idx = ts.per_seed_indices((42, 123, 456), 50_000, 8000)
  assert idx.shape == (3, 8000) and idx.dtype == np.int64
  for s, seed in enumerate((42, 123, 456)):
    np.testing.assert_array_equal(idx[s], _oracle_subset(seed, 50_000, 8000))
    assert len(np.unique(idx[s])) == 8000
  assert not np.array_equal(idx[0], idx[1]) and not np.array_equal(idx[1], idx[2])
  np.testing.assert_array_equal(idx, ts.per_seed_indices((42, 123, 456), 50_000, 8000))
  with pytest.raises(ValueError, match="needs the training seeds"):
    ts.per_seed_indices((), 100, 10)


def test_load_training_set_per_seed_and_shared_on_the_demo_bundle():
  """per_seed: train_images [S, N, 32, 32, 3] with row s = the bundle images at seed s's indices (oracle:
  numpy draw + padding by hand); shared: the subset of subset_seed (the convention before this option);
  the test subset is the same under both; train_set normalisation pools all seeds' images; test_indices and
  source_info (sha256 by hashlib) are recorded."""
  bundle = ts.load_demo_bundle()
  n_total = len(bundle["train_images"])
  padded = np.zeros((n_total, 32, 32, 3), np.uint8)
  padded[:, 2:30, 2:30, :] = bundle["train_images"][..., None]
  seeds = (1, 2, 3)
  cfg = _data_config(
    source="fashion_mnist_demo", num_train=64, num_test=50, normalization="train_set", subset="per_seed", subset_seed=7
  )
  per = ts.load_training_set(cfg, seeds=seeds)
  assert per.per_seed and per.seeds == seeds and per.num_train == 64 and per.image_shape == (32, 32, 3)
  assert per.train_images.shape == (3, 64, 32, 32, 3) and per.train_labels.shape == (3, 64)
  for s, seed in enumerate(seeds):
    want = _oracle_subset(seed, n_total, 64)
    np.testing.assert_array_equal(per.train_indices[s], want)
    np.testing.assert_array_equal(per.train_images[s], padded[want])
    np.testing.assert_array_equal(per.train_labels[s], bundle["train_labels"][want])
  x = per.train_images.reshape(-1, 32, 32, 3).astype(np.float64) / 255
  np.testing.assert_allclose(per.mean, x.mean(axis=(0, 1, 2)), rtol=1e-6)
  np.testing.assert_allclose(per.std, x.std(axis=(0, 1, 2)), rtol=1e-6)

  cfg.subset = "shared"
  shared = ts.load_training_set(cfg, seeds=seeds)
  rng = np.random.default_rng(7)
  want_tr = np.sort(rng.permutation(n_total)[:64])
  want_te = np.sort(rng.permutation(len(bundle["test_images"]))[:50])
  assert not shared.per_seed and shared.train_images.shape == (64, 32, 32, 3) and shared.num_train == 64
  np.testing.assert_array_equal(shared.train_images, padded[want_tr])
  for t in (shared, per):
    np.testing.assert_array_equal(t.test_labels, bundle["test_labels"][want_te])
    np.testing.assert_array_equal(t.test_indices, want_te)
    assert t.source_info == {
      "source": "fashion_mnist_demo",
      "name": "fashion_mnist_demo",
      "version": None,
      "format": "npz",
      "path": str(ts.DEMO_BUNDLE),
      "order": "the bundle's order",
      "files": {
        ts.DEMO_BUNDLE.name: {
          "size": ts.DEMO_BUNDLE.stat().st_size,
          "sha256": hashlib.sha256(ts.DEMO_BUNDLE.read_bytes()).hexdigest(),
        }
      },
    }
  np.testing.assert_array_equal(shared.train_indices, want_tr)
  np.testing.assert_array_equal(per.test_images, shared.test_images)
  cfg.subset = "sometimes"
  with pytest.raises(ValueError, match="data.subset must be one of"):
    ts.load_training_set(cfg, seeds=seeds)


def test_paper_conventions():
  """P3 (configs/paper.py) redraws the subset per seed; P1 v2 / v4 share one subset drawn with seed 42."""
  assert paper.get_config().data.subset == "per_seed"
  for arg in ("p1v2", "p1v4"):
    c = paper.get_config(arg)
    assert c.data.subset == "shared" and c.data.subset_seed == 42
  assert common.base_config().data.subset == "per_seed"


@pytest.mark.parametrize("driver", ["python", "scan"])
def test_vmapped_step_on_per_seed_data_equals_each_seed_alone_on_its_own_data(driver):
  """Two seeds trained in one vmapped call on images [2, N, ...] end where each seed ends when trained alone on
  its own images [N, ...] (the oracle: single-seed runs); giving both seeds the same data instead changes seed 2.

  Tolerance: a batch of 2 and a batch of 1 compile to different float orderings (how much depends on the CPU's
  vector units); Adam divides by sqrt(v), so a gradient element near 0 can turn a 1e-7 difference into ~1e-5
  of the parameter after 3 steps of lr 1e-3. atol 1e-4 is 10% of one Adam step, and the wrong-data run must
  differ by more than a full step (1e-3)."""
  model = models.CNN(conv_impl="im2col", **SMALL)
  rule = rules.create("bp", model, BP, steps_per_epoch=3)
  rng = np.random.default_rng(3)
  images = rng.integers(0, 256, (2, 30, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, (2, 30)).astype(np.int32)
  step = train.make_train_step(
    model,
    rule,
    batch_size=8,
    steps_per_epoch=3,
    mean=np.full(3, 0.5, np.float32),
    std=np.full(3, 0.25, np.float32),
    pad=4,
    flip=True,
  )
  state = lambda seeds: jax.vmap(
    functools.partial(train.create_train_state, model=model, rule=rule, image_shape=(32, 32, 3))
  )(jnp.asarray(train.seed_key_data(seeds)))
  per_seed = train.make_epoch_runner(step, steps_per_epoch=3, driver=driver, per_seed_data=True)
  shared = train.make_epoch_runner(step, steps_per_epoch=3, driver=driver)
  both, metrics = per_seed(state((7, 8)), jnp.asarray(images), jnp.asarray(labels))
  assert metrics["loss"].shape == (2,)
  for k, seed in enumerate((7, 8)):
    alone, m_alone = shared(state((seed,)), jnp.asarray(images[k]), jnp.asarray(labels[k]))
    np.testing.assert_allclose(metrics["loss"][k], m_alone["loss"][0], rtol=2e-5)
    jax.tree.map(
      lambda a, b, k=k: np.testing.assert_allclose(a[k], b[0], rtol=1e-4, atol=1e-4), both.params, alone.params
    )
  wrong, _ = shared(state((7, 8)), jnp.asarray(images[0]), jnp.asarray(labels[0]))
  assert np.max(np.abs(wrong.params["fc2"]["kernel"][1] - both.params["fc2"]["kernel"][1])) > 1e-3


# ---------------------------------------------------------------------------------------------- TFDS


def _png(img):
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format="PNG")
  return buf.getvalue()


def test_records_to_arrays_decodes_png_bytes_and_takes_arrays():
  """Records with PNG bytes (as stored by tfds) or decoded uint8 arrays (as tfds.data_source returns them) give
  the original images and labels; extra fields are ignored; malformed records name the record and field."""
  rng = np.random.default_rng(0)
  imgs = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  recs = [
    {"image": _png(imgs[0]), "label": 3, "id": b"train_00000"},
    {"image": imgs[1], "label": np.int64(9)},
    {"image": _png(imgs[2]), "label": 0},
    {"image": imgs[3], "label": 5},
  ]
  x, y = ts.records_to_arrays(recs, where="cifar10 train")
  np.testing.assert_array_equal(x, imgs)
  np.testing.assert_array_equal(y, [3, 9, 0, 5])
  assert x.dtype == np.uint8 and y.dtype == np.int32
  with pytest.raises(ValueError, match=r"cifar10 train: record 1 lacks field\(s\) \['label'\]"):
    ts.records_to_arrays([recs[0], {"image": imgs[1]}], where="cifar10 train")
  with pytest.raises(
    ValueError, match=r"src: record 0, field 'image': expected uint8 \[H, W, 3\], got uint8 \(32, 32\)"
  ):
    ts.records_to_arrays([{"image": imgs[0, ..., 0], "label": 1}], where="src")
  with pytest.raises(ValueError, match=r"record 1, field 'image': expected uint8 \(32, 32, 3\)"):
    ts.records_to_arrays([recs[0], {"image": imgs[1, :16], "label": 1}], where="src")


class _FakeSource:
  """Stands in for tfds' ArrayRecordDataSource: len() and __getitems__(positions) -> records, stored in `order`
  (record k holds original image order[k], id b"<split>_<order[k]>"); PNG-encoded images."""

  def __init__(self, images, labels, split, order):
    self.images, self.labels, self.split, self.order, self.requested = images, labels, split, order, []

  def __len__(self):
    return len(self.images)

  def __getitems__(self, positions):
    self.requested.extend(positions)
    return [
      {"image": self.images[self.order[k]], "label": int(self.labels[self.order[k]]), "id": self._id(k)}
      for k in positions
    ]

  def _id(self, k):
    return f"{self.split}_{self.order[k]:05d}".encode()


def _fake_tfds(monkeypatch, folder, *, prepared=True, file_format="array_record", sources=None):
  """Installs a fake `tensorflow_datasets` whose builder never downloads (download_and_prepare fails) and keeps its
  data set in `folder`; as_data_source(split, decoders=...) gives sources[split], a fresh id-only view with decoders."""
  calls = {}
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "dataset_info.json").write_text("{}")

  class Builder:
    version = "3.0.2"

    def __init__(self, name, data_dir):
      calls["builder"] = (name, data_dir)
      self.data_dir = str(folder)
      splits = {k: None for k in (sources or {})}
      self.info = types.SimpleNamespace(file_format=types.SimpleNamespace(value=file_format), splits=splits)

    def is_prepared(self):
      return prepared

    def as_data_source(self, split, decoders=None):
      src = sources[split]
      if decoders is None:
        return src
      assert list(decoders) == ["image"]  # the id pass skips image decoding
      return _FakeSource(src.images, src.labels, src.split, src.order)

    def download_and_prepare(self, *a, **k):
      raise AssertionError("brainalign must never download")

  fake = types.SimpleNamespace(
    builder=lambda name, data_dir=None, **k: Builder(name, data_dir),
    decode=types.SimpleNamespace(SkipDecoding=lambda: "skip"),
  )
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
  return calls


def test_tfds_missing_package_is_a_clear_error(monkeypatch):
  """Without tensorflow-datasets, source cifar10_tfds says to install the paper extra."""
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
  with pytest.raises(ImportError, match=r"needs tensorflow-datasets.*\.\[paper\]"):
    ts.load_training_set(_data_config(source="cifar10_tfds"), seeds=(1,))


def test_tfds_not_prepared_is_an_error_saying_how_to_prepare(monkeypatch, tmp_path):
  """A data dir without CIFAR-10: error naming the folder and the converter command for it; no download; a
  tfrecord copy (tfds build's default format, unreadable without TensorFlow) is refused with a NEW folder in both
  the command and the flag (tests/test_cifar10.py checks both with the real tfds)."""
  calls = _fake_tfds(monkeypatch, tmp_path / "ds", prepared=False)
  mydir = tmp_path / "mydir"
  with pytest.raises(FileNotFoundError) as e:
    ts.load_training_set(_data_config(source="cifar10_tfds", tfds_data_dir=str(mydir)), seeds=(1,))
  assert f"cifar10 is not prepared in data.tfds_data_dir={str(mydir)!r}" in str(e.value)
  assert "never downloads" in str(e.value)
  assert f"\n  .venv/bin/python -m brainalign.data.cifar10 --archive=cifar-10-python.tar.gz --data_dir={mydir}\n" in (
    str(e.value)
  )
  assert f"then run with --config.data.tfds_data_dir={mydir} " in str(e.value)
  assert calls["builder"] == ("cifar10", str(mydir))
  _fake_tfds(monkeypatch, tmp_path / "ds", prepared=True, file_format="tfrecord")
  with pytest.raises(ValueError) as e:
    ts.load_training_set(_data_config(source="cifar10_tfds", tfds_data_dir=str(mydir)), seeds=(1,))
  new = tmp_path / "mydir_array_record"
  assert "in the 'tfrecord' format, which only TensorFlow reads; brainalign reads array_record or parquet" in (
    str(e.value)
  )
  assert f"--data_dir={new}\n" in str(e.value) and f"--config.data.tfds_data_dir={new} " in str(e.value)
  assert f"={mydir}\n" not in str(e.value) and f"={mydir} " not in str(e.value)


def test_tfds_source_maps_ids_to_the_original_order_and_reads_only_the_drawn_records(monkeypatch, tmp_path):
  """Through a fake data source storing records in a shuffled order: per-seed train images equal the ORIGINAL
  arrays at numpy's indices (not the stored records at those positions), the test subset is the subset_seed
  draw, only the needed records are decoded (each once), and '~' in the data dir is expanded."""
  rng = np.random.default_rng(1)
  tr_img, te_img = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (120, 40))
  tr_lab, te_lab = rng.integers(0, 10, 120), rng.integers(0, 10, 40)
  order = {"train": rng.permutation(120), "test": rng.permutation(40)}
  sources = {
    "train": _FakeSource([_png(x) for x in tr_img], tr_lab, "train", order["train"]),
    "test": _FakeSource([_png(x) for x in te_img], te_lab, "test", order["test"]),
  }
  calls = _fake_tfds(monkeypatch, tmp_path / "ds", sources=sources)
  cfg = _data_config(
    source="cifar10_tfds",
    tfds_data_dir="~/tfds_here",
    num_train=16,
    num_test=10,
    subset_seed=5,
    normalization="cifar10",
    subset="per_seed",
  )
  t = ts.load_training_set(cfg, seeds=(42, 123))
  assert not calls["builder"][1].startswith("~") and calls["builder"][1].endswith("tfds_here")
  assert "via tensorflow_datasets" in t.name and t.source_info["version"] == "3.0.2"
  for s, seed in enumerate((42, 123)):
    want = _oracle_subset(seed, 120, 16)
    np.testing.assert_array_equal(t.train_indices[s], want)
    np.testing.assert_array_equal(t.train_images[s], tr_img[want])
    np.testing.assert_array_equal(t.train_labels[s], tr_lab[want])
  rng = np.random.default_rng(5)
  rng.permutation(120)
  want_te = np.sort(rng.permutation(40)[:10])
  np.testing.assert_array_equal(t.test_indices, want_te)
  np.testing.assert_array_equal(t.test_images, te_img[want_te])
  np.testing.assert_array_equal(t.test_labels, te_lab[want_te])
  union = np.union1d(_oracle_subset(42, 120, 16), _oracle_subset(123, 120, 16))
  where = np.argsort(order["train"])  # record holding original image i
  assert sorted(sources["train"].requested) == sorted(where[union].tolist())
  np.testing.assert_allclose(t.mean, ts.CIFAR10_MEAN)


def test_fingerprint_hashes_small_files_and_stats_large_ones(tmp_path, monkeypatch):
  """sha256 (hashlib of the bytes) up to FINGERPRINT_SHA256_MAX_BYTES; above it size + mtime_ns, never read."""
  (tmp_path / "a.json").write_bytes(b"{}")
  (tmp_path / "big.bin").write_bytes(bytes(100))
  monkeypatch.setattr(ts, "FINGERPRINT_SHA256_MAX_BYTES", 99)
  st = (tmp_path / "big.bin").stat()
  assert ts.fingerprint_files(tmp_path, ["big.bin", "a.json"]) == {
    "a.json": {"size": 2, "sha256": hashlib.sha256(b"{}").hexdigest()},
    "big.bin": {"size": 100, "mtime_ns": st.st_mtime_ns},
  }
