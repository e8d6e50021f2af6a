"""Training/test image sets for the classifier, read once into uint8 arrays that then live on the device.

Sources (config `data.source`):
  "fashion_mnist_demo": the bundled 8,000 + 1,000 Fashion-MNIST images (brainalign/data/assets), padded
      from 28x28 to 32x32 with zeros and repeated to 3 channels. Offline; the demo's default.
  "npz": any .npz at `data.path` with train_images [N, 32, 32, 3] uint8, train_labels [N], test_images,
      test_labels, taken to be in the ORIGINAL order (for CIFAR-10: data_batch_1..5, test_batch, as
      `python -m brainalign.data.cifar10 --npz=...` writes it).
  "cifar10_tfds": tfds' cifar10 in `data.tfds_data_dir` (the paper config), written once from the CIFAR-10
      archive by `python -m brainalign.data.cifar10` (docs/cifar10.md) or by tfds itself in array_record
      format. Read with tfds' random-access data source (images decoded with Pillow), so it needs
      `tensorflow-datasets` (the `paper` extra) but not TensorFlow, and reads only the records of the
      drawn subsets. Never downloads: a data set that is not there is an error that says how to write it.

Indices (subsets, TrainingSet.train_indices / test_indices) always refer to the ORIGINAL order of a source's
images: the bundle's order (demo), the arrays' order (npz), the original CIFAR-10 order (cifar10_tfds: tfds
stores records in its own hashed order; each record's `id` field, b"train_00499", gives its original index; the
map from original index to record is rebuilt from all ids at every load, about 5 s for CIFAR-10's 60,000
records, so it is not cached; brainalign/data/tfds_source.py). A seed therefore draws the same images from every
source of the same data.

Training subset (config `data.subset`; docs/methods.md §4.0, both conventions of the study):
  "shared": one subset of `num_train` images for all seeds, drawn with `subset_seed` (P1's v8 notebook:
      seed 42). train_images [N, 32, 32, 3].
  "per_seed": every training seed s draws its own subset with numpy.random.default_rng(s) (P3's script,
      which redraws the subset per seed). train_images [S, N, 32, 32, 3], axis 0 in the order of `seeds`.
Either way a subset is the first `num_train` entries of a permutation of the training indices (sorted
afterwards; the training step shuffles), and the held-out test subset is shared: drawn with `subset_seed`
right after the shared training subset, so it is the same under both conventions.
"""

import dataclasses
import hashlib
import io
import os
import pathlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypedDict

import numpy as np

from brainalign.errors import ConfigError, DataError, MissingFileError
from brainalign.settings import DataSettings

ASSETS = pathlib.Path(__file__).resolve().parent / "assets"
DEMO_BUNDLE = ASSETS / "fashion_mnist_demo.npz"
FASHION_MNIST_CLASSES = (
  "t-shirt",
  "trouser",
  "pullover",
  "dress",
  "coat",
  "sandal",
  "shirt",
  "sneaker",
  "bag",
  "ankle_boot",
)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.247, 0.243, 0.261)
SUBSETS = ("shared", "per_seed")
# Files up to this size are fingerprinted by sha256 (CIFAR-10's shards, ~110 MiB, and .npz, ~180 MB: about
# 0.5 s together); larger ones by size + modification time, so that a run never hashes many GB.
FINGERPRINT_SHA256_MAX_BYTES = 1 << 30


class FileFingerprint(TypedDict, total=False):
  """One file: size in bytes, and sha256 (hex; files up to FINGERPRINT_SHA256_MAX_BYTES) or mtime_ns (larger)."""

  size: int
  sha256: str
  mtime_ns: int


class SourceInfo(TypedDict):
  """What a run records about its training data (JSON-ready).

  source: config.data.source; name: the data set ("cifar10", "fashion_mnist_demo", or the .npz file name);
  version: the tfds data set version ("3.0.2"), None for npz and the demo bundle; format: "array_record",
  "parquet" or "npz"; path: the data set's folder (tfds) or file (absolute); order: what the indices refer to;
  files: FileFingerprint of each file read, by name relative to the folder (tfds) or the file's name.
  """

  source: str
  name: str
  version: str | None
  format: str
  path: str
  order: str
  files: dict[str, FileFingerprint]


@dataclasses.dataclass(frozen=True)
class TrainingSet:
  """Images as uint8, labels int32; mean/std [3] are the per-channel normalisation.

  train_images: [N, H, W, 3] (subset "shared") or [S, N, H, W, 3] (subset "per_seed", axis 0 = `seeds`).
  train_labels: [N] or [S, N] int32.
  test_images: [T, H, W, 3]; test_labels: [T] int32 (shared by all seeds).
  train_indices: [N] or [S, N] int64, the training images' indices in the ORIGINAL order of the source's training
    split (CIFAR-10: data_batch_1..5; row s = seeds[s]), sorted; train_images[..., k, :, :, :] is image
    train_indices[..., k].
  test_indices: [T] int64, the test images' indices in the original order of the test split (test_batch).
  source_info: the data source's name, version and file fingerprints (SourceInfo).
  """

  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  mean: np.ndarray
  std: np.ndarray
  name: str
  subset: str = "shared"
  seeds: tuple = ()
  train_indices: np.ndarray | None = None
  test_indices: np.ndarray | None = None
  source_info: SourceInfo | None = None

  @property
  def per_seed(self) -> bool:
    """True when every seed has its own training images (train_images [S, N, H, W, 3])."""
    return self.subset == "per_seed"

  @property
  def num_train(self) -> int:
    """N, the training images per seed."""
    return int(self.train_images.shape[1] if self.per_seed else self.train_images.shape[0])

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of one training image."""
    return tuple(int(d) for d in self.train_images.shape[-3:])


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of a source, read by index: `take(indices [k]) -> (images uint8 [k, H, W, 3], labels int32 [k])`."""

  size: int
  take: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

  @staticmethod
  def of_arrays(images: np.ndarray, labels: np.ndarray) -> "Split":
    """A split over in-memory arrays images [N, H, W, 3], labels [N]."""
    return Split(len(images), lambda idx: (images[idx], np.asarray(labels)[idx].astype(np.int32)))


def pad_to_rgb32(images: np.ndarray) -> np.ndarray:
  """[N, 28, 28] uint8 -> [N, 32, 32, 3] uint8: 2 black pixels per side, grey repeated to RGB."""
  padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
  return np.repeat(padded[..., None], 3, axis=-1)


def load_demo_bundle() -> dict[str, np.ndarray]:
  """All arrays of the bundled Fashion-MNIST subset (see brainalign/data/assets/README.md)."""
  if not DEMO_BUNDLE.exists():
    raise MissingFileError(
      f"The demo bundle {DEMO_BUNDLE} is missing; it is part of the repository "
      "(rebuild it with tools/make_demo_bundle.py)."
    )
  with np.load(DEMO_BUNDLE) as z:
    return {k: z[k] for k in z.files}


def _channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std [3] of uint8 images [..., H, W, 3] scaled to [0, 1] (all leading axes pooled)."""
  x = images.reshape((-1,) + images.shape[-3:]).astype(np.float64) / 255.0
  return x.mean(axis=(0, 1, 2)).astype(np.float32), x.std(axis=(0, 1, 2)).astype(np.float32)


def _subset(rng: np.random.Generator, n_total: int, n: int) -> np.ndarray:
  """The first n of a permutation of range(n_total), sorted: [n] int64."""
  if n > n_total:
    raise ConfigError(f"data.num_train={n} exceeds the {n_total} images available")
  return np.sort(rng.permutation(n_total)[:n])


def per_seed_indices(seeds: Sequence[int], n_total: int, n: int) -> np.ndarray:
  """Training subsets of the "per_seed" convention: [S, n] int64, row s drawn with numpy.random.default_rng(seeds[s]).

  Each row is the first n entries of a permutation of range(n_total), sorted (P3 redraws its subset per seed;
  its PyTorch stream cannot be replayed, so the draw is numpy's, reproducible from the seed alone).
  """
  if not len(seeds):
    raise ConfigError("data.subset='per_seed' needs the training seeds (config.seeds is empty)")
  return np.stack([_subset(np.random.default_rng(int(s)), n_total, n) for s in seeds])


def records_to_arrays(records: Iterable[dict], *, where: str) -> tuple[np.ndarray, np.ndarray]:
  """TFDS records -> (images uint8 [k, H, W, 3], labels int32 [k]).

  Each record is a dict with 'image' (uint8 array [H, W, 3], or encoded PNG/JPEG bytes, decoded with Pillow)
  and 'label' (int); other keys (e.g. 'id') are ignored. `where` names the source in error messages.

  Raises:
    ValueError: a record lacks a field, or an image is not uint8 [H, W, 3] with the H, W of the first.
  """
  from PIL import Image

  images, labels = [], []
  for k, rec in enumerate(records):
    missing = [f for f in ("image", "label") if f not in rec]
    if missing:
      raise DataError(
        f"{where}: record {k} lacks field(s) {missing}; expected 'image' and 'label' (found {sorted(rec)})"
      )
    img = rec["image"]
    if isinstance(img, (bytes, bytearray)):
      with Image.open(io.BytesIO(img)) as im:
        img = np.asarray(im)
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3 or (images and img.shape != images[0].shape):
      want = f"{images[0].shape}" if images else "[H, W, 3]"
      raise DataError(f"{where}: record {k}, field 'image': expected uint8 {want}, got {img.dtype} {img.shape}")
    images.append(img)
    labels.append(int(np.asarray(rec["label"])))
  if not images:
    return np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0,), np.int32)
  return np.stack(images), np.asarray(labels, np.int32)


def fingerprint_files(folder: str | os.PathLike, names: Sequence[str]) -> dict[str, FileFingerprint]:
  """{name: FileFingerprint} of folder/name for each name: size, and sha256 (files up to
  FINGERPRINT_SHA256_MAX_BYTES) or mtime_ns (larger files)."""
  out = {}
  for name in sorted(names):
    path = pathlib.Path(folder) / name
    st = path.stat()
    if st.st_size > FINGERPRINT_SHA256_MAX_BYTES:
      out[name] = FileFingerprint(size=int(st.st_size), mtime_ns=int(st.st_mtime_ns))
      continue
    digest = hashlib.sha256()
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 22), b""):
        digest.update(block)
    out[name] = FileFingerprint(size=int(st.st_size), sha256=digest.hexdigest())
  return out


def _npz_source(path: pathlib.Path) -> tuple[Split, Split, str, SourceInfo]:
  """The .npz source (arrays taken to be in the original order)."""
  if not path.exists():
    raise MissingFileError(
      f"data.path={str(path)!r} does not exist (expected an .npz with train_images, "
      "train_labels, test_images, test_labels; `python -m brainalign.data.cifar10 --npz=...` writes one)"
    )
  with np.load(path) as z:
    missing = [k for k in ("train_images", "train_labels", "test_images", "test_labels") if k not in z.files]
    if missing:
      raise DataError(f"{path}: missing arrays {missing}; found {z.files}")
    tr, ytr, te, yte = z["train_images"], z["train_labels"], z["test_images"], z["test_labels"]
  if tr.dtype != np.uint8 or tr.ndim != 4 or tr.shape[-1] != 3:
    raise DataError(f"{path}: train_images must be uint8 [N, H, W, 3], got {tr.dtype} {tr.shape}")
  info = SourceInfo(
    source="npz",
    name=path.name,
    version=None,
    format="npz",
    path=str(path.resolve()),
    order="the arrays' order, taken to be the original one",
    files=fingerprint_files(path.parent, [path.name]),
  )
  return Split.of_arrays(tr, ytr), Split.of_arrays(te, yte), f"npz file {path}", info


def _open_source(data_config: Any) -> tuple[Split, Split, str, SourceInfo]:
  """(train split, test split, description, source info) of config.data.source."""
  source = data_config.source
  if source == "fashion_mnist_demo":
    bundle = load_demo_bundle()
    info = SourceInfo(
      source=source,
      name="fashion_mnist_demo",
      version=None,
      format="npz",
      path=str(DEMO_BUNDLE),
      order="the bundle's order",
      files=fingerprint_files(DEMO_BUNDLE.parent, [DEMO_BUNDLE.name]),
    )
    return (
      Split.of_arrays(pad_to_rgb32(bundle["train_images"]), bundle["train_labels"]),
      Split.of_arrays(pad_to_rgb32(bundle["test_images"]), bundle["test_labels"]),
      "Fashion-MNIST demo subset (bundled, MIT licence)",
      info,
    )
  if source == "npz":
    return _npz_source(pathlib.Path(data_config.path).expanduser())
  if source == "cifar10_tfds":
    from brainalign.data import tfds_source

    return tfds_source.tfds_splits(data_config.tfds_data_dir)
  raise ConfigError(f"Unknown data.source {source!r}; valid: fashion_mnist_demo, npz, cifar10_tfds")


def load_training_set(data_config: Any, seeds: Sequence[int] = ()) -> TrainingSet:
  """Reads `config.data` into a TrainingSet (see the module docstring for sources, subsets and index order).

  Args:
    data_config: config.data: source, num_train, num_test, subset_seed, normalization, path, tfds_data_dir,
      subset ("shared" | "per_seed"; a config without the key is "shared").
    seeds: [S] training seeds, needed for subset "per_seed" (row s of train_images belongs to seeds[s]).
  normalization: "train_set" (per-channel mean/std of the selected training images, all seeds' subsets
  pooled for "per_seed", so every seed and the stimuli share one normalisation) or "cifar10" (the reference
  constants (0.4914, 0.4822, 0.4465) / (0.247, 0.243, 0.261)).
  Returns train_indices [N] or [S, N] and test_indices [T] in the original order, and source_info.
  """
  data_config = DataSettings.of(data_config)
  subset = data_config.subset
  if subset not in SUBSETS:
    raise ConfigError(f"data.subset must be one of {SUBSETS}, got {subset!r}")
  train, test, name, info = _open_source(data_config)
  rng = np.random.default_rng(data_config.subset_seed)
  itr = _subset(rng, train.size, data_config.num_train)
  if data_config.num_test > test.size:
    raise ConfigError(
      f"config.data.num_test={data_config.num_test} exceeds the {test.size} test images of {name}; expected at "
      f"most {test.size}"
    )
  ite = _subset(rng, test.size, data_config.num_test)
  te, yte = test.take(ite)
  if subset == "shared":
    tr, ytr = train.take(itr)
    seeds = ()
  else:
    itr = per_seed_indices(seeds, train.size, data_config.num_train)  # [S, N]
    union = np.unique(itr)  # read every image once
    images_u, labels_u = train.take(union)
    pos = np.searchsorted(union, itr)
    tr, ytr = images_u[pos], labels_u[pos]  # [S, N, H, W, 3], [S, N]
    name += f"; per-seed {data_config.num_train}-image subsets (numpy default_rng(seed))"
  if data_config.normalization == "train_set":
    mean, std = _channel_stats(tr)
  elif data_config.normalization == "cifar10":
    mean, std = np.asarray(CIFAR10_MEAN, np.float32), np.asarray(CIFAR10_STD, np.float32)
  else:
    raise ConfigError(f"Unknown data.normalization {data_config.normalization!r}; valid: train_set, cifar10")
  return TrainingSet(
    tr,
    ytr.astype(np.int32),
    te,
    yte.astype(np.int32),
    mean,
    std,
    name,
    subset=subset,
    seeds=tuple(int(s) for s in seeds),
    train_indices=itr.astype(np.int64),
    test_indices=ite.astype(np.int64),
    source_info=info,
  )
