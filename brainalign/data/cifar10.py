"""CIFAR-10 from the archive on the CIFAR-10 site, written as tensorflow_datasets' `cifar10` (no TensorFlow, no Beam).

Convert once, from the repository root (needs the `paper` extra, `pip install -e ".[paper]"`: tensorflow-datasets
and array_record; no network, no TensorFlow, no Apache Beam; about 35 s and 0.7 GB of memory):

  .venv/bin/python -m brainalign.data.cifar10 --archive=cifar-10-python.tar.gz --data_dir=~/tensorflow_datasets

then train with `--config.data.source=cifar10_tfds --config.data.tfds_data_dir=~/tensorflow_datasets`.
`--npz=cifar10.npz` writes (also, or instead) an .npz in the original order for `--config.data.source=npz
--config.data.path=cifar10.npz` (the base install suffices for that). `--archive` takes either download of
https://www.cs.toronto.edu/~kriz/cifar.html, `cifar-10-python.tar.gz` (pickled batches) or
`cifar-10-binary.tar.gz` (the file tfds' own builder downloads), or the folder it unpacks to.

Archive layouts read (both: 5 training batches, then the test batch; 10,000 images each in the real archive):
  cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch: pickles (Python 2, bytes keys) of dicts with
      b"data" uint8 [n, 3072] and b"labels" [n] ints 0..9; batches.meta: b"label_names" (10 names). Only NumPy's
      array reconstruction may run while unpickling.
  cifar-10-batches-bin/data_batch_1.bin .. data_batch_5.bin, test_batch.bin: n records of 3,073 bytes, the
      label byte then the 3,072 pixel bytes; batches.meta.txt: the 10 names, one a line.
  A row of 3,072 pixel bytes is the red, green and blue planes of 32 x 32 pixels, each plane row-major: the image
  is row.reshape(3, 32, 32).transpose(1, 2, 0), uint8 [32, 32, 3] in RGB order.
  The ORIGINAL ORDER, the one brainalign's subset indices refer to: the training images are data_batch_1..5
  concatenated (image i = row i % 10000 of data_batch_{i // 10000 + 1}; torchvision's CIFAR10 order), the test
  images test_batch's rows.

Dataset written (tfds' own `Cifar10` builder class, version 3.0.2, with its features, metadata, shuffling,
sharding and array_record writer; only the examples come from the local archive, PNG-encoded with Pillow):
  <data_dir>/cifar10/3.0.2/
    dataset_info.json  name "cifar10", version "3.0.2", fileFormat "array_record", moduleName
        "brainalign.data.cifar10" (a real tfds build says "tensorflow_datasets.image_classification.cifar"),
        splits [{name "train" | "test", shardLengths [records per shard], numBytes, filepathTemplate
        "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"}], supervisedKeys (image, label), description,
        citation, location.
    features.json      FeaturesDict {id: Text, image: Image(shape [32, 32, 3], dtype uint8), label:
        ClassLabel(numClasses 10)}.
    label.labels.txt   the archive's 10 class names, one a line (airplane, automobile, ..., truck).
    cifar10-<split>.array_record-<k>-of-<n>: shard k of n (5 digits each; tfds' rule: n = 1 below 128 MiB of
        records, else the largest power of two <= 512 keeping shards >= 64 MiB). Each record is a tf.train.Example
        with the features "id" (bytes_list: b"train_00499" = original training image 499; b"test_00007"),
        "image" (bytes_list: one PNG file, 8-bit RGB, 32 x 32) and "label" (int64_list: the class, 0..9).
  Record order (tfds' shuffle): sorted by int(md5(split name + str(original index)).hexdigest(), 16), then cut
  into n contiguous shards at round(N * k / n), k = 1..n. brainalign maps records back to the original order
  through the "id" field (training_sets.tfds_splits). The PNG bytes differ from TensorFlow's encoder (a real
  `tfds build`) but decode to the same pixels: PNG is lossless.
docs/cifar10.md says the same for users; tests/test_cifar10.py checks these points against the archive's arrays.
"""

import argparse
import dataclasses
import functools
import io
import pathlib
import pickle
import sys
import tarfile
import tempfile

import numpy as np

IMAGE_SHAPE = (32, 32, 3)
ROW_BYTES = 3072  # 32 * 32 * 3
NUM_CLASSES = 10
VERSION = "3.0.2"  # tfds' Cifar10.VERSION, the version this module writes
LAYOUTS = {
  "python": dict(
    prefix="cifar-10-batches-py",
    train=tuple(f"data_batch_{k}" for k in range(1, 6)),
    test="test_batch",
    meta="batches.meta",
  ),
  "binary": dict(
    prefix="cifar-10-batches-bin",
    train=tuple(f"data_batch_{k}.bin" for k in range(1, 6)),
    test="test_batch.bin",
    meta="batches.meta.txt",
  ),
}
# Globals a CIFAR-10 pickle may name (NumPy's array reconstruction, bytes under protocol 2); nothing else runs.
_PICKLE_GLOBALS = {
  ("numpy.core.multiarray", "_reconstruct"),
  ("numpy._core.multiarray", "_reconstruct"),
  ("numpy", "ndarray"),
  ("numpy", "dtype"),
  ("_codecs", "encode"),
}


@dataclasses.dataclass(frozen=True)
class CifarArrays:
  """CIFAR-10 in the original order: train_images [N, 32, 32, 3] uint8 RGB, train_labels [N] int64, test_images
  [T, 32, 32, 3], test_labels [T]; label_names: the 10 class names; layout: "python" | "binary"."""

  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  label_names: tuple[str, ...]
  layout: str


def rows_to_images(rows: np.ndarray) -> np.ndarray:
  """[n, 3072] uint8 rows (R, G, B planes, each 32 x 32 row-major) -> [n, 32, 32, 3] uint8 RGB images."""
  return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


class _CifarUnpickler(pickle.Unpickler):
  def find_class(self, module, name):
    if (module, name) not in _PICKLE_GLOBALS:
      raise pickle.UnpicklingError(f"refusing {module}.{name}: a CIFAR-10 batch holds only NumPy arrays and lists")
    return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
  """A CIFAR-10 pickle -> dict with str keys (Python 2 pickles are read with encoding='bytes')."""
  try:
    obj = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
  except Exception as e:
    raise ValueError(f"{where}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from e
  if not isinstance(obj, dict):
    raise ValueError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
  return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _check_labels(labels: np.ndarray, n: int, where: str) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.shape != (n,) or labels.dtype.kind not in "iu":
    raise ValueError(f"{where}: field 'labels': expected {n} integers, got {labels.dtype} {labels.shape}")
  if n and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
    raise ValueError(f"{where}: field 'labels': expected values 0..9, got {labels.min()}..{labels.max()}")
  return labels.astype(np.int64)


def parse_python_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
  """One pickled batch (data_batch_k, test_batch) -> (images [n, 32, 32, 3] uint8, labels [n] int64)."""
  batch = _unpickle(data, where)
  missing = [k for k in ("data", "labels") if k not in batch]
  if missing:
    raise ValueError(f"{where}: missing field(s) {missing}; found {sorted(batch)}")
  rows = np.asarray(batch["data"])
  if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != ROW_BYTES:
    raise ValueError(f"{where}: field 'data': expected uint8 [n, {ROW_BYTES}], got {rows.dtype} {rows.shape}")
  return rows_to_images(rows), _check_labels(batch["labels"], len(rows), where)


def parse_binary_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
  """One binary batch (data_batch_k.bin, test_batch.bin) -> (images [n, 32, 32, 3] uint8, labels [n] int64)."""
  if len(data) % (ROW_BYTES + 1):
    raise ValueError(f"{where}: {len(data)} bytes is not a whole number of {ROW_BYTES + 1}-byte records")
  records = np.frombuffer(data, np.uint8).reshape(-1, ROW_BYTES + 1)
  return rows_to_images(records[:, 1:]), _check_labels(records[:, 0], len(records), where)


def _label_names(layout: str, data: bytes, where: str) -> tuple[str, ...]:
  if layout == "python":
    meta = _unpickle(data, where)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", [])]
  else:
    names = [n for n in data.decode().split("\n") if n]
  if len(names) != NUM_CLASSES:
    raise ValueError(f"{where}: expected {NUM_CLASSES} label names, got {len(names)}: {names}")
  return tuple(names)


def _read_members(path: pathlib.Path) -> tuple[str, dict[str, bytes], str]:
  """(layout, {file name: bytes} of the layout's files, where) from a .tar(.gz) archive or an unpacked folder."""
  if path.is_dir():
    found = {layout: path if path.name == spec["prefix"] else path / spec["prefix"] for layout, spec in LAYOUTS.items()}
    for layout, folder in found.items():
      spec = LAYOUTS[layout]
      if (folder / spec["test"]).exists():
        names = (*spec["train"], spec["test"], spec["meta"])
        missing = [n for n in names if not (folder / n).exists()]
        if missing:
          raise FileNotFoundError(f"{folder}: missing {missing} (a CIFAR-10 {layout} folder has {list(names)})")
        return layout, {n: (folder / n).read_bytes() for n in names}, str(folder)
    raise FileNotFoundError(f"{path}: no {' or '.join(s['prefix'] for s in LAYOUTS.values())} folder with its batches")
  try:
    tar = tarfile.open(path)
  except (tarfile.TarError, OSError) as e:
    raise ValueError(
      f"{path}: not a tar archive ({e}); expected cifar-10-python.tar.gz or cifar-10-binary.tar.gz"
    ) from e
  with tar:
    members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
    for layout, spec in LAYOUTS.items():
      names = (*spec["train"], spec["test"], spec["meta"])
      if any(f"{spec['prefix']}/{n}" in members for n in names):
        missing = [f"{spec['prefix']}/{n}" for n in names if f"{spec['prefix']}/{n}" not in members]
        if missing:
          raise ValueError(f"{path}: missing member(s) {missing} of the CIFAR-10 {layout} archive")
        return layout, {n: tar.extractfile(members[f"{spec['prefix']}/{n}"]).read() for n in names}, str(path)
  raise ValueError(
    f"{path}: no CIFAR-10 batches found; expected members {LAYOUTS['python']['prefix']}/data_batch_1.. "
    f"(cifar-10-python.tar.gz) or {LAYOUTS['binary']['prefix']}/data_batch_1.bin.. (cifar-10-binary.tar.gz)"
  )


def read_archive(path: str | pathlib.Path) -> CifarArrays:
  """CIFAR-10 in the original order from cifar-10-python.tar.gz, cifar-10-binary.tar.gz or their unpacked folder.

  Returns CifarArrays: train_images [N, 32, 32, 3] uint8 (data_batch_1..5 concatenated), test_images [T, 32, 32, 3]
  (test_batch), labels [N], [T] int64 0..9, the 10 label names (batches.meta / batches.meta.txt).

  Raises:
    FileNotFoundError / ValueError: the path is missing, not a CIFAR-10 archive, or a batch is malformed (the
      message names the file and the field).
  """
  path = pathlib.Path(path).expanduser()
  if not path.exists():
    raise FileNotFoundError(f"{path}: no such file; expected cifar-10-python.tar.gz or cifar-10-binary.tar.gz")
  layout, files, where = _read_members(path)
  spec = LAYOUTS[layout]
  parse = parse_python_batch if layout == "python" else parse_binary_batch
  train = [parse(files[n], f"{where}: {spec['prefix']}/{n}") for n in spec["train"]]
  test_images, test_labels = parse(files[spec["test"]], f"{where}: {spec['prefix']}/{spec['test']}")
  return CifarArrays(
    np.concatenate([b[0] for b in train]),
    np.concatenate([b[1] for b in train]),
    test_images,
    test_labels,
    _label_names(layout, files[spec["meta"]], f"{where}: {spec['prefix']}/{spec['meta']}"),
    layout,
  )


def encode_png(image: np.ndarray) -> bytes:
  """uint8 [32, 32, 3] RGB -> PNG bytes (8-bit RGB, Pillow's encoder; lossless)."""
  from PIL import Image

  buf = io.BytesIO()
  Image.fromarray(image, mode="RGB").save(buf, format="PNG")
  return buf.getvalue()


@functools.cache
def _builder_class():
  """tfds' Cifar10 builder with the examples taken from `self.arrays` instead of a download (imported lazily)."""
  from tensorflow_datasets.image_classification import cifar

  class Cifar10(cifar.Cifar10, skip_registration=True):
    """The real builder (name cifar10, version, features, metadata, shuffling, writer); examples from an archive."""

    __module__ = "brainalign.data.cifar10"  # dataset_info.json's moduleName, also under `python -m`
    # No download, so no checksums file. Also keeps tfds 4.9.10 off its code_path lookup, which imports
    # importlib_resources (not a declared dependency on Python >= 3.9) for builders defined in a package.
    code_path = None
    arrays: CifarArrays | None = None

    def _split_generators(self, dl_manager):
      self.info.features["label"].names = list(self.arrays.label_names)
      a = self.arrays
      return {
        "train": self._examples("train_", a.train_images, a.train_labels),
        "test": self._examples("test_", a.test_images, a.test_labels),
      }

    def _examples(self, prefix, images, labels):
      # as cifar.Cifar10._generate_examples: key = original index, id = prefix + 5-digit index
      for index in range(len(images)):
        yield index, {"id": f"{prefix}{index:05d}", "image": encode_png(images[index]), "label": int(labels[index])}

  return Cifar10


def write_tfds(arrays: CifarArrays, data_dir: str | pathlib.Path, *, num_shards: int | None = None) -> pathlib.Path:
  """Writes `arrays` (original order) as tfds' cifar10 3.0.2 in array_record format; returns <data_dir>/cifar10/3.0.2.

  num_shards: shards per split; None = tfds' own rule (1 below 128 MiB of records, else the largest power of two
  <= 512 that keeps shards above 64 MiB). tfds writes into a temporary `incomplete.*` folder and renames it when
  done, so an interrupted run leaves no half-written dataset.

  Raises:
    FileExistsError: <data_dir>/cifar10/3.0.2 exists already (in any format); it is never overwritten.
  """
  from brainalign.data.tfds_source import import_tfds

  tfds = import_tfds()
  root = pathlib.Path(data_dir).expanduser().resolve()
  target = root / "cifar10" / VERSION
  if target.exists():
    raise FileExistsError(
      f"{target} exists already; brainalign never overwrites a dataset. Give another --data_dir, or delete "
      f"{target} first."
    )
  builder = _builder_class()(data_dir=str(root), file_format="array_record")
  builder.arrays = arrays
  config = tfds.download.DownloadConfig(try_download_gcs=False, num_shards=num_shards)
  with tempfile.TemporaryDirectory(prefix="cifar10-downloads-") as downloads:  # tfds wants one; nothing lands in it
    builder.download_and_prepare(download_dir=downloads, download_config=config)
  return target


def write_npz(arrays: CifarArrays, path: str | pathlib.Path) -> pathlib.Path:
  """Writes `arrays` as the .npz that --config.data.source=npz reads (atomically): train_images [N, 32, 32, 3]
  uint8, train_labels [N] int64, test_images [T, 32, 32, 3], test_labels [T], label_names [10] str; original order."""
  from brainalign import io as bio

  path = pathlib.Path(path).expanduser()
  bio.write_npz(
    path,
    train_images=arrays.train_images,
    train_labels=arrays.train_labels,
    test_images=arrays.test_images,
    test_labels=arrays.test_labels,
    label_names=np.asarray(arrays.label_names),
  )
  return path


def main(argv: list[str] | None = None) -> int:
  """The command line (see the module docstring); returns the exit status (0 = written, 1 = an error was printed)."""
  parser = argparse.ArgumentParser(
    prog="python -m brainalign.data.cifar10",
    description="Write CIFAR-10 from its downloaded archive as tensorflow_datasets' cifar10 3.0.2 (array_record; "
    "read by --config.data.source=cifar10_tfds) and/or as an .npz (--config.data.source=npz). No TensorFlow, no "
    "network.",
  )
  parser.add_argument("--archive", required=True, help="cifar-10-python.tar.gz, cifar-10-binary.tar.gz, or unpacked")
  parser.add_argument("--data_dir", help="tfds data dir: writes DIR/cifar10/3.0.2 (needs the paper extra)")
  parser.add_argument("--npz", help="also/instead write this .npz (original order; needs only the base install)")
  parser.add_argument("--num_shards", type=int, default=None, help="shards per split (default: tfds' rule)")
  args = parser.parse_args(argv)
  if not (args.data_dir or args.npz):
    parser.error("give --data_dir (tfds dataset) and/or --npz (.npz file)")
  try:
    arrays = read_archive(args.archive)
    n = f"{len(arrays.train_images)} train + {len(arrays.test_images)} test images, {arrays.layout} archive"
    if args.npz:
      path = write_npz(arrays, args.npz)
      print(f"Wrote CIFAR-10 ({n}) to {path}. Train with: --config.data.source=npz --config.data.path={path}")
    if args.data_dir:
      from brainalign.data.tfds_source import import_tfds

      import_tfds().disable_progress_bar()
      target = write_tfds(arrays, args.data_dir, num_shards=args.num_shards)
      print(
        f"Wrote CIFAR-10 ({n}) to {target}. Train with: --config.data.source=cifar10_tfds "
        f"--config.data.tfds_data_dir={target.parent.parent}"
      )
  except (FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
