"""The CIFAR-10 converter (brainalign/data/cifar10.py) and the cifar10_tfds source on what it writes.

Oracles: the arrays a tiny archive is written from (tests/cifar10_fixture.py, in the site's byte layout), the
layout in brainalign/data/cifar10.py's docstring (docs/cifar10.md) checked file by file with array_record's own
reader, tf.train.Example parsing and Pillow, tfds' own readers (tfds.data_source, builder_from_directory),
hashlib (sha256 fingerprints, tfds' md5 record order) and numpy's subset draws. Needs the `paper` extra
(tensorflow-datasets, array_record), which .ci/run installs; never TensorFlow.
"""

import hashlib
import io
import json
import pickle
import sys
import tarfile

import cifar10_fixture as fx
import numpy as np
import pytest
from PIL import Image

from brainalign.configs import common
from brainalign.data import cifar10, tfds_source
from brainalign.data import training_sets as ts

tfds = pytest.importorskip("tensorflow_datasets")  # the paper extra; installed by .ci/run ([test])
from array_record.python import array_record_module  # noqa: E402  (a tensorflow-datasets dependency)
from tensorflow_datasets.proto import tf_example_pb2  # noqa: E402  (tf.train.Example, shipped with tfds)


@pytest.fixture(scope="module")
def data():
  """(arrays, batch cuts) of a 32 + 12 image CIFAR-10 in the original order."""
  return fx.make_arrays()


@pytest.fixture(scope="module")
def converted(data, tmp_path_factory):
  """A python archive of `data`, converted by the documented command with 2 shards per split: (archive, data_dir)."""
  tmp = tmp_path_factory.mktemp("cifar")
  archive = fx.write_archive(tmp / "cifar-10-python.tar.gz", *data)
  assert cifar10.main([f"--archive={archive}", f"--data_dir={tmp / 'tfds'}", "--num_shards=2"]) == 0
  return archive, tmp / "tfds"


def _cfg(**kw):
  c = common.base_config().data
  c.update(dict(num_test=8, subset_seed=5, normalization="cifar10"), **kw)
  return c


def _draw(seed, n_total, n):
  return np.sort(np.random.default_rng(seed).permutation(n_total)[:n])


# ---------------------------------------------------------------------------------------------- the archive


@pytest.mark.parametrize("layout", ["python", "binary"])
def test_read_archive_gives_the_archive_arrays_in_original_order_rgb(layout, data, tmp_path):
  """Both downloads (and the folder they unpack to) give the arrays the archive was written from: batches
  concatenated in order, labels, the 10 names, and RGB (image 0: red, one green pixel at row 1, column 2)."""
  arrays, cuts = data
  path = fx.write_archive(tmp_path / f"cifar-10-{layout}.tar.gz", arrays, cuts, layout=layout)
  with tarfile.open(path) as tar:
    tar.extractall(tmp_path / "unpacked", filter="data")
  folder = tmp_path / "unpacked" / f"cifar-10-batches-{'py' if layout == 'python' else 'bin'}"
  for source in (path, folder, folder.parent):
    a = cifar10.read_archive(source)
    assert a.layout == layout and a.label_names == fx.LABEL_NAMES
    for k in ("train_images", "train_labels", "test_images", "test_labels"):
      np.testing.assert_array_equal(getattr(a, k), arrays[k])
    assert a.train_images.dtype == np.uint8 and a.train_images.shape == (32, 32, 32, 3)
    assert a.train_images[0, 0, 0].tolist() == [255, 0, 0] and a.train_images[0, 1, 2].tolist() == [0, 255, 0]


def test_read_archive_errors_name_the_file_and_field(data, tmp_path):
  """Missing members, malformed batches, out-of-range labels, foreign pickles and non-archives are refused with
  the member and field named; a pickle naming any global but NumPy's array reconstruction never runs."""
  arrays, cuts = data
  with pytest.raises(ValueError, match=r"missing member\(s\) \['cifar-10-batches-py/test_batch'\]"):
    cifar10.read_archive(fx.write_archive(tmp_path / "a.tar.gz", arrays, cuts, drop=("test_batch",)))
  bad = dict(arrays, train_labels=np.where(np.arange(32) == 3, 10, arrays["train_labels"]))
  with pytest.raises(ValueError, match=r"data_batch_1.bin: field 'labels': expected values 0\.\.9, got 0\.\.10"):
    cifar10.read_archive(fx.write_archive(tmp_path / "b.tar.gz", bad, cuts, layout="binary"))
  with pytest.raises(ValueError, match=r"batches.meta.txt: expected 10 label names, got 9"):
    cifar10.read_archive(fx.write_archive(tmp_path / "c.tar.gz", arrays, cuts, "binary", fx.LABEL_NAMES[:9]))
  with pytest.raises(ValueError, match=r"data_batch_1: field 'data': expected uint8 \[n, 3072\], got uint8 \(2, 3\)"):
    cifar10.parse_python_batch(pickle.dumps({b"data": np.zeros((2, 3), np.uint8), b"labels": [0, 1]}), "data_batch_1")
  with pytest.raises(ValueError, match=r"x.bin: 3074 bytes is not a whole number of 3073-byte records"):
    cifar10.parse_binary_batch(bytes(3074), "x.bin")

  class Evil:
    def __reduce__(self):
      return (print, ("ran",))

  with pytest.raises(ValueError, match=r"test_batch: not a CIFAR-10 python batch.*refusing builtins\.print"):
    cifar10.parse_python_batch(pickle.dumps({b"data": Evil()}), "test_batch")
  (tmp_path / "x.tar.gz").write_bytes(b"not a tar")
  with pytest.raises(ValueError, match=r"x.tar.gz: not a tar archive"):
    cifar10.read_archive(tmp_path / "x.tar.gz")
  with tarfile.open(tmp_path / "other.tar.gz", "w:gz") as tar:
    tar.addfile(tarfile.TarInfo("hello.txt"), io.BytesIO(b""))
  with pytest.raises(ValueError, match=r"other.tar.gz: no CIFAR-10 batches found"):
    cifar10.read_archive(tmp_path / "other.tar.gz")
  with pytest.raises(FileNotFoundError, match=r"nope.tar.gz: no such file"):
    cifar10.read_archive(tmp_path / "nope.tar.gz")


# ---------------------------------------------------------------------------------------------- the tfds layout


def _read_shards(folder, split, num_shards):
  """[(shard name, [tf.train.Example])] of a split, read with array_record's reader (not tfds)."""
  out = []
  for k in range(num_shards):
    name = f"cifar10-{split}.array_record-{k:05d}-of-{num_shards:05d}"
    reader = array_record_module.ArrayRecordReader(str(folder / name))
    out.append((name, [tf_example_pb2.Example.FromString(r) for r in reader.read_all()]))
    reader.close()
  return out


def test_converter_writes_the_documented_tfds_layout(data, converted):
  """Every point of the layout in cifar10.py's docstring: files, dataset_info.json, features.json, label names,
  shard names, record features and kinds, ids = original indices, PNG pixels and labels = the archive's arrays,
  record order = md5(split + str(index)) order cut into contiguous shards (so it is NOT the original order)."""
  arrays, _ = data
  folder = converted[1] / "cifar10" / "3.0.2"
  shards = {s: [f"cifar10-{s}.array_record-{k:05d}-of-00002" for k in range(2)] for s in ("train", "test")}
  assert sorted(p.name for p in converted[1].iterdir()) == ["cifar10"]  # no downloads/ or incomplete.* left
  assert sorted(p.name for p in folder.iterdir()) == sorted(
    ["dataset_info.json", "features.json", "label.labels.txt", *shards["train"], *shards["test"]]
  )
  info = json.loads((folder / "dataset_info.json").read_text())
  assert (info["name"], info["version"], info["fileFormat"]) == ("cifar10", "3.0.2", "array_record")
  assert info["moduleName"] == "brainalign.data.cifar10"
  n = {"train": 32, "test": 12}
  for split in info["splits"]:
    assert split["filepathTemplate"] == "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
    assert [int(v) for v in split["shardLengths"]] == [n[split["name"]] // 2] * 2
  assert sorted(s["name"] for s in info["splits"]) == ["test", "train"]
  assert [i["featureKey"] for i in info["supervisedKeys"]["tuple"]["items"]] == ["image", "label"]
  feats = json.loads((folder / "features.json").read_text())["featuresDict"]["features"]
  assert feats["id"]["pythonClassName"].endswith("text_feature.Text")
  assert feats["image"]["image"] == {"shape": {"dimensions": ["32", "32", "3"]}, "dtype": "uint8"}
  assert feats["label"]["classLabel"] == {"numClasses": "10"}
  assert (folder / "label.labels.txt").read_text().split() == list(fx.LABEL_NAMES)
  for split in ("train", "test"):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    md5 = lambda i, split=split: int(hashlib.md5(f"{split}{i}".encode()).hexdigest(), 16)
    order = sorted(range(n[split]), key=md5)  # tfds' shuffle: sort by md5(salt = split name, key = index)
    stored = []
    for (name, examples), want in zip(_read_shards(folder, split, 2), np.split(np.asarray(order), 2)):
      assert name in shards[split]
      for ex, i in zip(examples, want):
        f = ex.features.feature
        assert sorted(f) == ["id", "image", "label"]
        assert [f[k].WhichOneof("kind") for k in ("id", "image", "label")] == ["bytes_list", "bytes_list", "int64_list"]
        assert list(f["id"].bytes_list.value) == [f"{split}_{i:05d}".encode()]
        assert list(f["label"].int64_list.value) == [labels[i]]
        with Image.open(io.BytesIO(f["image"].bytes_list.value[0])) as im:
          assert (im.format, im.mode, im.size) == ("PNG", "RGB", (32, 32))
          np.testing.assert_array_equal(np.asarray(im), images[i])
        stored.append(i)
    assert stored == order and stored != sorted(stored)


def test_tfds_own_readers_read_the_converted_dataset_without_tensorflow(data, converted):
  """tfds.data_source and tfds.builder_from_directory open it (no TensorFlow imported): split sizes, label names,
  and every record decoded by tfds equals the archive image named by its id."""
  arrays, _ = data
  folder = converted[1] / "cifar10" / "3.0.2"
  builder = tfds.builder_from_directory(str(folder))
  assert builder.info.features["label"].names == list(fx.LABEL_NAMES)
  assert (builder.info.splits["train"].num_examples, builder.info.splits["test"].num_examples) == (32, 12)
  for split, src in tfds.data_source("cifar10", data_dir=str(converted[1]), download=False).items():
    assert len(src) == len(arrays[f"{split}_images"])
    for rec in src:
      i = int(rec["id"].decode().split("_")[1])
      np.testing.assert_array_equal(rec["image"], arrays[f"{split}_images"][i])
      assert rec["label"] == arrays[f"{split}_labels"][i]
  assert "tensorflow" not in sys.modules


def test_converter_never_overwrites_and_reports_errors(data, converted, tmp_path, capsys):
  """An existing <data_dir>/cifar10/3.0.2 is refused (exit 1, the folder named); so is a missing archive."""
  assert cifar10.main([f"--archive={converted[0]}", f"--data_dir={converted[1]}"]) == 1
  assert f"{converted[1] / 'cifar10' / '3.0.2'} exists already" in capsys.readouterr().err
  assert cifar10.main([f"--archive={tmp_path / 'missing.tar.gz'}", f"--data_dir={tmp_path}"]) == 1
  assert "missing.tar.gz: no such file" in capsys.readouterr().err
  assert not (tmp_path / "cifar10").exists()


# ---------------------------------------------------------------------------------------------- reading it back


@pytest.mark.parametrize("subset", ["per_seed", "shared"])
def test_tfds_source_draws_the_original_order_images_of_each_seed(subset, data, converted, tmp_path):
  """Stored order != original order (previous test), yet each seed's images are the archive's arrays at numpy's
  draw over the original indices, the same as from an .npz of the arrays (np.savez here) and from the
  converter's --npz; test images likewise; source_info names cifar10 3.0.2 with every file's sha256."""
  arrays, _ = data
  np.savez(tmp_path / "oracle.npz", **arrays)
  assert cifar10.main([f"--archive={converted[0]}", f"--npz={tmp_path / 'converted.npz'}"]) == 0
  kw = dict(num_train=10, subset=subset)
  t = ts.load_training_set(_cfg(source="cifar10_tfds", tfds_data_dir=str(converted[1]), **kw), seeds=(1, 2))
  rng = np.random.default_rng(5)
  shared, want_te = _draw(5, 32, 10), (rng.permutation(32), np.sort(rng.permutation(12)[:8]))[1]
  want = np.stack([_draw(1, 32, 10), _draw(2, 32, 10)]) if subset == "per_seed" else shared
  np.testing.assert_array_equal(t.train_indices, want)
  np.testing.assert_array_equal(t.train_images, arrays["train_images"][want])
  np.testing.assert_array_equal(t.train_labels, arrays["train_labels"][want])
  np.testing.assert_array_equal(t.test_indices, want_te)
  np.testing.assert_array_equal(t.test_images, arrays["test_images"][want_te])
  assert t.train_indices.dtype == np.int64 and t.test_indices.dtype == np.int64
  for npz in ("oracle.npz", "converted.npz"):
    u = ts.load_training_set(_cfg(source="npz", path=str(tmp_path / npz), **kw), seeds=(1, 2))
    np.testing.assert_array_equal(u.train_images, t.train_images)
    np.testing.assert_array_equal(u.test_images, t.test_images)
    np.testing.assert_array_equal(u.train_indices, t.train_indices)
  folder = converted[1] / "cifar10" / "3.0.2"
  info = t.source_info
  assert {k: info[k] for k in ("source", "name", "version", "format", "path")} == {
    "source": "cifar10_tfds",
    "name": "cifar10",
    "version": "3.0.2",
    "format": "array_record",
    "path": str(folder.resolve()),
  }
  assert info["files"] == {
    p.name: {"size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in folder.iterdir()
  }
  json.dumps(info)  # JSON-ready
  assert u.source_info["version"] is None and u.source_info["name"] == "converted.npz"


def test_binary_archive_gives_the_same_tfds_records_as_the_python_archive(data, converted, tmp_path):
  """cifar-10-binary.tar.gz (what tfds' builder downloads) converts to records with the same ids, labels and
  pixels, in the same order, as cifar-10-python.tar.gz."""
  archive = fx.write_archive(tmp_path / "cifar-10-binary.tar.gz", *data, layout="binary")
  assert cifar10.main([f"--archive={archive}", f"--data_dir={tmp_path}", "--num_shards=2"]) == 0
  for split in ("train", "test"):
    a = _read_shards(tmp_path / "cifar10" / "3.0.2", split, 2)
    b = _read_shards(converted[1] / "cifar10" / "3.0.2", split, 2)
    for (_, xs), (_, ys) in zip(a, b):
      for x, y in zip(xs, ys):
        fx_, fy = x.features.feature, y.features.feature
        assert fx_["id"] == fy["id"] and fx_["label"] == fy["label"]
        decode = lambda f: np.asarray(Image.open(io.BytesIO(f["image"].bytes_list.value[0])))
        np.testing.assert_array_equal(decode(fx_), decode(fy))


def test_record_positions_maps_ids_to_records_and_refuses_bad_ids():
  """positions[i] = the record whose id is <split>_i (hand-computed case); malformed, duplicated or missing ids
  are errors naming the record and the field."""
  ids = [b"train_00002", b"train_00000", b"train_00003", b"train_00001"]
  np.testing.assert_array_equal(tfds_source.record_positions(ids, "train", where="d"), [1, 3, 0, 2])
  with pytest.raises(ValueError, match=r"d: record 1, field 'id': expected 'train_NNNNN'.*got 'test_00000'"):
    tfds_source.record_positions([b"train_00000", b"test_00000"], "train", where="d")
  with pytest.raises(ValueError, match=r"d: field 'id': expected each of train_00000\.\.train_00002 once; 1 dup"):
    tfds_source.record_positions([b"train_00000", b"train_00000", b"train_00001"], "train", where="d")


def test_tfds_errors_give_the_verified_command_with_one_folder(data, converted, tmp_path):
  """Not there: the converter command for that data dir. tfrecord (tfds build's default; here the converted
  dataset_info.json relabelled, read by real tfds): refused, and the message names one NEW folder in both the
  command and the flag, never the old one as a target."""
  empty = tmp_path / "empty"
  with pytest.raises(FileNotFoundError, match=r"(?s)not prepared in data\.tfds_data_dir=.*empty.*never downloads"):
    tfds_source.tfds_splits(empty)
  try:
    tfds_source.tfds_splits(empty)
  except FileNotFoundError as e:
    assert f"-m brainalign.data.cifar10 --archive=cifar-10-python.tar.gz --data_dir={empty}\n" in str(e)
    assert f"--config.data.tfds_data_dir={empty} " in str(e)
  src, old = converted[1] / "cifar10" / "3.0.2", tmp_path / "tfds"
  (old / "cifar10" / "3.0.2").mkdir(parents=True)
  info = json.loads((src / "dataset_info.json").read_text())
  (old / "cifar10" / "3.0.2" / "features.json").write_bytes((src / "features.json").read_bytes())
  (old / "cifar10" / "3.0.2" / "dataset_info.json").write_text(json.dumps(dict(info, fileFormat="tfrecord")))
  with pytest.raises(ValueError) as e:
    tfds_source.tfds_splits(old)
  msg, new = str(e.value), tmp_path / "tfds_array_record"
  assert "holds cifar10 in the 'tfrecord' format, which only TensorFlow reads" in msg
  assert f"--data_dir={new}\n" in msg and f"--config.data.tfds_data_dir={new} " in msg
  assert f"--data_dir={old}\n" not in msg and f"tfds_data_dir={old} " not in msg


def test_a_run_on_the_converted_dataset_trains_and_lists_each_seeds_images(data, converted, tmp_path):
  """The pipeline trains on the converted dataset (data.source=cifar10_tfds) and its outputs list, per seed,
  the original-order indices numpy's draw gives, and the source's name, version and file fingerprints."""
  import pandas as pd
  import rdm_fixture

  from brainalign import pipeline

  _, data_dir = converted
  rdm = rdm_fixture.write(tmp_path / "rdm")
  c = rdm_fixture.config(rdm, tmp_path / "cache", rules=("random", "bp"))
  c.data.update(source="cifar10_tfds", tfds_data_dir=str(data_dir), num_train=16, num_test=8, normalization="cifar10")
  c.train.batch_size = 8
  out = pipeline.run(c, str(tmp_path / "run"))
  assert out["work"]["bp"]["epochs_trained"] == 1
  idx = pd.read_csv(tmp_path / "run" / "results" / "train_indices.csv")
  for seed in c.seeds:
    np.testing.assert_array_equal(idx[idx.seed == seed]["index"].to_numpy(), _draw(seed, 32, 16))
  info = json.loads((tmp_path / "run" / "run_info.json").read_text())["train_data_source"]
  assert info["name"] == "cifar10" and info["version"] == "3.0.2" and info["files"]
  tr = pd.read_csv(tmp_path / "run" / "results" / "training.csv")
  assert np.isfinite(tr[tr.epoch == 1].test_accuracy).all()
