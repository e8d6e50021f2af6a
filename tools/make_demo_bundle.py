"""Builds brainalign/data/assets/fashion_mnist_demo.npz from Debian's `dataset-fashion-mnist` package.

Run once by a maintainer (the result is committed; users never need the Debian package):

  apt-get install dataset-fashion-mnist
  python tools/make_demo_bundle.py

Selection (deterministic, numpy default_rng(20261127)):
  train:    8,000 of the 60,000 training images, 800 per class;
  test:     1,000 of the 10,000 test images, 100 per class (held out for accuracy);
  stimuli:  720 further test images, 72 per class, disjoint from `test` (the demo's THINGS-like stimuli).
Images are stored as the original 28x28 uint8; brainalign pads them to 32x32 and repeats them to 3 channels.
"""

import gzip
import pathlib

import numpy as np

SRC = pathlib.Path("/usr/share/datasets/fashion-mnist")
OUT = pathlib.Path(__file__).resolve().parents[1] / "brainalign/data/assets/fashion_mnist_demo.npz"


def _idx(path: pathlib.Path) -> np.ndarray:
  with gzip.open(path, "rb") as f:
    data = f.read()
  magic = int.from_bytes(data[:4], "big")
  ndim = magic & 0xFF
  shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _per_class(rng, labels, counts):
  picks = [[] for _ in counts]
  for c in range(10):
    idx = rng.permutation(np.flatnonzero(labels == c))
    start = 0
    for k, n in enumerate(counts):
      picks[k].append(idx[start : start + n])
      start += n
  return [np.sort(np.concatenate(p)) for p in picks]


def main():
  rng = np.random.default_rng(20261127)
  xtr, ytr = _idx(SRC / "train-images-idx3-ubyte.gz"), _idx(SRC / "train-labels-idx1-ubyte.gz")
  xte, yte = _idx(SRC / "t10k-images-idx3-ubyte.gz"), _idx(SRC / "t10k-labels-idx1-ubyte.gz")
  (tr,) = _per_class(rng, ytr, [800])
  te, st = _per_class(rng, yte, [100, 72])
  st = st[np.lexsort((st, yte[st]))]  # stimuli grouped by class, then by original index
  np.savez_compressed(
    OUT,
    train_images=xtr[tr],
    train_labels=ytr[tr],
    test_images=xte[te],
    test_labels=yte[te],
    stimulus_images=xte[st],
    stimulus_labels=yte[st],
    train_source_index=tr.astype(np.int32),
    test_source_index=te.astype(np.int32),
    stimulus_source_index=st.astype(np.int32),
  )
  print(OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
  main()
