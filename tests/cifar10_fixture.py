"""Tiny CIFAR-10 archives in the original layouts of the CIFAR-10 site, written here from known arrays.

The arrays are the oracle: a test writes an archive from them, runs brainalign on the archive and compares what
comes back with the arrays. Byte layouts follow the site's description (https://www.cs.toronto.edu/~kriz/cifar.html)
and are built plane by plane here, independently of brainalign's decoding (a reshape/transpose):
  python: cifar-10-batches-py/{data_batch_1..5, test_batch} pickles (protocol 2, bytes keys: b"batch_label",
          b"labels" list of ints, b"data" uint8 [n, 3072], b"filenames"), batches.meta (b"label_names").
  binary: cifar-10-batches-bin/{data_batch_1..5, test_batch}.bin, per image 1 label byte then 3,072 pixel bytes;
          batches.meta.txt, one name a line.
  A row of 3,072 bytes: the 1,024 red values, then green, then blue, each 32 x 32 plane row by row.
"""

import io
import pickle
import tarfile

import numpy as np

LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def make_arrays(n_per_batch=(7, 6, 7, 5, 7), n_test=12, seed=0):
  """Random original-order arrays: train_images [sum(n_per_batch), 32, 32, 3] uint8, train_labels, test_images,
  test_labels, and batches (the training arrays cut into the 5 batches). Image 0 is pure red with one green
  pixel at row 1, column 2 (channel-order check)."""
  rng = np.random.default_rng(seed)
  n = sum(n_per_batch)
  train = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  train[0] = (255, 0, 0)
  train[0, 1, 2] = (0, 255, 0)
  out = dict(
    train_images=train,
    train_labels=rng.integers(0, 10, n),
    test_images=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
    test_labels=rng.integers(0, 10, n_test),
  )
  out["train_labels"][:10] = np.arange(10)  # every class present
  return out, np.cumsum(n_per_batch)[:-1]


def rows_of(images):
  """[n, 32, 32, 3] -> [n, 3072]: red plane, green plane, blue plane, each row by row (the site's layout)."""
  n = len(images)
  return np.concatenate([images[..., c].reshape(n, 32 * 32) for c in range(3)], axis=1)


def _add(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def write_archive(path, arrays, cuts, layout="python", label_names=LABEL_NAMES, drop=()):
  """Writes cifar-10-python.tar.gz ("python") or cifar-10-binary.tar.gz ("binary") of `arrays` to `path`; `cuts`
  splits the training arrays into the 5 batches. Members named in `drop` are left out (error tests)."""
  train = zip(np.split(arrays["train_images"], cuts), np.split(arrays["train_labels"], cuts))
  batches = [(f"data_batch_{k + 1}", x, y) for k, (x, y) in enumerate(train)]
  batches.append(("test_batch", arrays["test_images"], arrays["test_labels"]))
  with tarfile.open(path, "w:gz") as tar:
    for name, images, labels in batches:
      if layout == "python":
        batch = {
          b"batch_label": name.encode(),
          b"labels": [int(v) for v in labels],
          b"data": rows_of(images),
          b"filenames": [f"img_{k}.png".encode() for k in range(len(images))],
        }
        member, data = f"cifar-10-batches-py/{name}", pickle.dumps(batch, protocol=2)
      else:
        records = np.concatenate([np.asarray(labels, np.uint8)[:, None], rows_of(images)], axis=1)
        member, data = f"cifar-10-batches-bin/{name}.bin", records.tobytes()
      if member.rsplit("/", 1)[1] not in drop:
        _add(tar, member, data)
    if layout == "python":
      meta = {b"num_cases_per_batch": 10000, b"label_names": [s.encode() for s in label_names], b"num_vis": 3072}
      _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
    else:
      _add(tar, "cifar-10-batches-bin/batches.meta.txt", ("\n".join(label_names) + "\n\n").encode())
    _add(tar, f"cifar-10-batches-{'py' if layout == 'python' else 'bin'}/readme.html", b"<html></html>")
  return path
