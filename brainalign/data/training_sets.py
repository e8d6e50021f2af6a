"""Training/test image sets for the classifier, read once into uint8 arrays that then live on the device.

Sources (config `data.source`):
  "fashion_mnist_demo": the bundled 8,000 + 1,000 Fashion-MNIST images (brainalign/data/assets), padded
      from 28x28 to 32x32 with zeros and repeated to 3 channels. Offline; the demo's default.
  "npz": any .npz at `data.path` with train_images [N, 32, 32, 3] uint8, train_labels [N], test_images,
      test_labels (e.g. CIFAR-10 exported once by the user).
  "cifar10_tfds": CIFAR-10 through tensorflow_datasets (the paper config); not available in this version,
      fails with instructions instead of downloading anything.
"""
import dataclasses
import pathlib
from typing import Any

import numpy as np

ASSETS = pathlib.Path(__file__).resolve().parent / "assets"
DEMO_BUNDLE = ASSETS / "fashion_mnist_demo.npz"
FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                         "ankle_boot")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.247, 0.243, 0.261)


@dataclasses.dataclass(frozen=True)
class TrainingSet:
  """Images as uint8 [N, 32, 32, 3], labels int32 [N]; mean/std [3] are the per-channel normalisation."""
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  mean: np.ndarray
  std: np.ndarray
  name: str


def pad_to_rgb32(images: np.ndarray) -> np.ndarray:
  """[N, 28, 28] uint8 -> [N, 32, 32, 3] uint8: 2 black pixels per side, grey repeated to RGB."""
  padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
  return np.repeat(padded[..., None], 3, axis=-1)


def load_demo_bundle() -> dict[str, np.ndarray]:
  """All arrays of the bundled Fashion-MNIST subset (see brainalign/data/assets/README.md)."""
  if not DEMO_BUNDLE.exists():
    raise FileNotFoundError(f"The demo bundle {DEMO_BUNDLE} is missing; it is part of the repository "
                            "(rebuild it with tools/make_demo_bundle.py).")
  with np.load(DEMO_BUNDLE) as z:
    return {k: z[k] for k in z.files}


def _channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  x = images.astype(np.float64) / 255.0
  return x.mean(axis=(0, 1, 2)).astype(np.float32), x.std(axis=(0, 1, 2)).astype(np.float32)


def _subset(rng: np.random.Generator, n_total: int, n: int) -> np.ndarray:
  if n > n_total:
    raise ValueError(f"data.num_train={n} exceeds the {n_total} images available")
  return np.sort(rng.permutation(n_total)[:n])


def load_training_set(data_config: Any) -> TrainingSet:
  """Reads `config.data` (source, num_train, num_test, subset_seed, normalization, path) into a TrainingSet.

  normalization: "train_set" (per-channel mean/std of the selected training images) or "cifar10"
  (the reference constants (0.4914, 0.4822, 0.4465) / (0.247, 0.243, 0.261)).
  """
  rng = np.random.default_rng(data_config.subset_seed)
  if data_config.source == "fashion_mnist_demo":
    bundle = load_demo_bundle()
    tr, te = pad_to_rgb32(bundle["train_images"]), pad_to_rgb32(bundle["test_images"])
    ytr, yte = bundle["train_labels"], bundle["test_labels"]
    name = "Fashion-MNIST demo subset (bundled, MIT licence)"
  elif data_config.source == "npz":
    path = pathlib.Path(data_config.path)
    if not path.exists():
      raise FileNotFoundError(f"data.path={str(path)!r} does not exist (expected an .npz with train_images, "
                              "train_labels, test_images, test_labels)")
    with np.load(path) as z:
      missing = [k for k in ("train_images", "train_labels", "test_images", "test_labels") if k not in z.files]
      if missing:
        raise ValueError(f"{path}: missing arrays {missing}; found {z.files}")
      tr, ytr, te, yte = z["train_images"], z["train_labels"], z["test_images"], z["test_labels"]
    if tr.dtype != np.uint8 or tr.ndim != 4 or tr.shape[-1] != 3:
      raise ValueError(f"{path}: train_images must be uint8 [N, H, W, 3], got {tr.dtype} {tr.shape}")
    name = f"npz file {path}"
  elif data_config.source == "cifar10_tfds":
    raise NotImplementedError(
        "data.source='cifar10_tfds' (CIFAR-10 through tensorflow_datasets) is not implemented in this version. "
        "Export CIFAR-10 once to an .npz (train_images [50000, 32, 32, 3] uint8, train_labels, test_images, "
        "test_labels) and run with --config.data.source=npz --config.data.path=/path/to/cifar10.npz.")
  else:
    raise ValueError(f"Unknown data.source {data_config.source!r}; valid: fashion_mnist_demo, npz, cifar10_tfds")

  itr = _subset(rng, len(tr), data_config.num_train)
  ite = _subset(rng, len(te), min(data_config.num_test, len(te)))
  tr, ytr, te, yte = tr[itr], ytr[itr].astype(np.int32), te[ite], yte[ite].astype(np.int32)
  if data_config.normalization == "train_set":
    mean, std = _channel_stats(tr)
  elif data_config.normalization == "cifar10":
    mean, std = np.asarray(CIFAR10_MEAN, np.float32), np.asarray(CIFAR10_STD, np.float32)
  else:
    raise ValueError(f"Unknown data.normalization {data_config.normalization!r}; valid: train_set, cifar10")
  return TrainingSet(tr, ytr, te, yte, mean, std, name)
