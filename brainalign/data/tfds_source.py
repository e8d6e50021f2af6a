"""CIFAR-10 from a tensorflow_datasets data dir (config data.source="cifar10_tfds"), read without TensorFlow.

The data set is tfds' cifar10 (3.0.2), written once from the CIFAR-10 archive by `python -m brainalign.data.cifar10`
(layout: that module's docstring, docs/cifar10.md) or by tfds itself in the array_record format. tfds stores the
records in its own hashed order; every record's `id` field (b"train_00499") names its index in the original
CIFAR-10 order, and both splits are indexed in that order here: the ids of all records are read once per load
(images skipped; about 5 s for 60,000 records on two CPU cores, small next to a run, so the map is not
cached), then only the drawn records are decoded
(by tfds, with Pillow), and each one's id is checked again.
"""

import os
import pathlib
from collections.abc import Sequence

import numpy as np

from brainalign.data.training_sets import SourceInfo, Split, fingerprint_files, records_to_arrays
from brainalign.errors import DataError, MissingDependencyError, MissingFileError

TFDS_NAME = "cifar10"
TFDS_RANDOM_ACCESS_FORMATS = ("array_record", "parquet")  # what tfds.data_source can read
_TFDS_CHUNK = 4096  # records decoded per data-source call

TFDS_PREPARE_HELP = (
  "Write it once from the CIFAR-10 archive (cifar-10-python.tar.gz or cifar-10-binary.tar.gz from "
  "https://www.cs.toronto.edu/~kriz/cifar.html), in the brainalign folder; no TensorFlow and no network:\n"
  "  .venv/bin/python -m brainalign.data.cifar10 --archive=cifar-10-python.tar.gz --data_dir={data_dir}\n"
  "then run with --config.data.tfds_data_dir={data_dir} (docs/cifar10.md)."
)


def import_tfds():
  """tensorflow_datasets, or ImportError saying how to install it (it is an optional dependency)."""
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise MissingDependencyError(
      f"config.data.source='cifar10_tfds' needs tensorflow-datasets, an optional package ({e})",
      hint='pip install -e ".[paper]" (TensorFlow itself is not needed), or use '
      "--config.data.source=npz with an .npz export of CIFAR-10",
    ) from None
  return tfds


def record_positions(ids: Sequence[bytes | str], split: str, *, where: str) -> np.ndarray:
  """Stored records' ids [n] (b"train_00499", in stored order) -> positions [n] int64: positions[i] is the record
  that holds original image i of `split`.

  Raises:
    ValueError: an id is not "<split>_<digits>", or the ids are not each of <split>_00000 .. n-1 exactly once.
  """
  prefix = f"{split}_"
  original = np.empty(len(ids), np.int64)
  for k, raw in enumerate(ids):
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if not (text.startswith(prefix) and text[len(prefix) :].isdigit()):
      raise DataError(
        f"{where}: record {k}, field 'id': expected '{prefix}NNNNN' (the image's index in the original CIFAR-10 "
        f"order, as tfds' cifar10 builder writes it), got {text!r}"
      )
    original[k] = int(text[len(prefix) :])
  n = len(ids)
  if not np.array_equal(np.sort(original), np.arange(n)):
    values, counts = np.unique(original, return_counts=True)
    dup, missing = values[counts > 1], np.setdiff1d(np.arange(n), original)
    raise DataError(
      f"{where}: field 'id': expected each of {prefix}{0:05d}..{prefix}{n - 1:05d} once; {len(dup)} duplicated "
      f"(e.g. {dup[:3].tolist()}), {len(missing)} missing (e.g. {missing[:3].tolist()}), "
      f"{int(np.sum(original >= n))} out of range"
    )
  return np.argsort(original).astype(np.int64)


def _chunks(idx: np.ndarray) -> list[list[int]]:
  idx = [int(i) for i in np.asarray(idx)]
  return [idx[k : k + _TFDS_CHUNK] for k in range(0, len(idx), _TFDS_CHUNK)]


def _tfds_split(tfds, builder, split: str) -> Split:
  """A Split of one tfds split indexed in the original order (ids of all records read once, images skipped)."""
  where = f"{builder.data_dir} (split {split!r})"
  id_source = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
  ids = [rec["id"] for chunk in _chunks(np.arange(len(id_source))) for rec in id_source.__getitems__(chunk)]
  positions = record_positions(ids, split, where=where)
  source = builder.as_data_source(split)

  def take(idx):
    """Original indices [k] -> (images [k, H, W, 3] uint8, labels [k] int32), each record's id checked."""
    parts = []
    for chunk in _chunks(idx):
      records = source.__getitems__(positions[chunk].tolist())
      for i, rec in zip(chunk, records):
        got = rec["id"].decode() if isinstance(rec["id"], bytes) else str(rec["id"])
        if got != f"{split}_{i:05d}":
          raise DataError(f"{where}: record {positions[i]}, field 'id': expected {split}_{i:05d}, got {got!r}")
      parts.append(records_to_arrays(records, where=where))
    if not parts:
      return records_to_arrays([], where=where)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

  return Split(len(positions), take)


def tfds_splits(data_dir: str | os.PathLike, *, name: str = TFDS_NAME) -> tuple[Split, Split, str, SourceInfo]:
  """(train, test, description, source info) of a TFDS data set in `data_dir`, read without TensorFlow.

  Checks that `<data_dir>/<name>/<version>` is there and in a random-access format (array_record or parquet),
  then opens `builder.as_data_source()` (never downloads). Both splits are indexed in the original CIFAR-10 order
  through each record's `id` (record_positions); records are decoded by tfds with Pillow.

  Raises:
    ImportError: tensorflow-datasets is not installed.
    FileNotFoundError: the data set is not there (the message gives the command that writes it).
    ValueError: it is in a format tfds.data_source cannot read (tfrecord, `tfds build`'s default), a split is
      missing, or the records' ids are not the original indices.
  """
  tfds = import_tfds()
  root = pathlib.Path(data_dir).expanduser()
  builder = tfds.builder(name, data_dir=str(root))
  if not builder.is_prepared():
    raise MissingFileError(
      f"data.source='cifar10_tfds': {name} is not prepared in data.tfds_data_dir={str(root)!r} (no "
      f"{builder.data_dir}/dataset_info.json); brainalign never downloads it. "
      + TFDS_PREPARE_HELP.format(data_dir=root)
    )
  fmt = getattr(builder.info.file_format, "value", str(builder.info.file_format))
  if fmt not in TFDS_RANDOM_ACCESS_FORMATS:
    new_dir = root.with_name(root.name + "_array_record")
    raise DataError(
      f"data.source='cifar10_tfds': {builder.data_dir} holds {name} in the {fmt!r} format, which only TensorFlow "
      f"reads; brainalign reads {' or '.join(TFDS_RANDOM_ACCESS_FORMATS)}. Keep that folder and write an "
      f"array_record copy into a new data dir, {new_dir}. " + TFDS_PREPARE_HELP.format(data_dir=new_dir)
    )
  missing = [s for s in ("train", "test") if s not in builder.info.splits]
  if missing:
    raise DataError(f"{builder.data_dir}: split(s) {missing} missing; found {sorted(builder.info.splits)}")
  folder = pathlib.Path(builder.data_dir)
  info = SourceInfo(
    source="cifar10_tfds",
    name=name,
    version=str(builder.version),
    format=fmt,
    path=str(folder.resolve()),
    order="original CIFAR-10 order (data_batch_1..5, test_batch), from each record's 'id' field",
    files=fingerprint_files(folder, [p.name for p in folder.iterdir() if p.is_file()]),
  )
  description = f"{name} {builder.version} via tensorflow_datasets ({fmt}) in {builder.data_dir}, original order"
  return _tfds_split(tfds, builder, "train"), _tfds_split(tfds, builder, "test"), description, info
