"""Stimulus images in the THINGS layout and the study's evaluation transform.

Layout (docs/data-formats.md §7.2): `<images_dir>/object_images/<concept>/<stimulus>`, where `concept` is the
stimulus name without its `_<NN><letter>.jpg` suffix (`stimulus.rsplit('_', 1)[0]`). A folder that is itself
named `object_images` may be given directly.

Evaluation transform (docs/methods.md §5): convert to RGB -> resize the shorter side to R (bilinear, antialiased
when shrinking, as torchvision's Resize on PIL images) -> centre crop R x R -> [0, 1] -> normalise with the
training set's per-channel mean and std.
"""

import io
import os
import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from brainalign.errors import DataError, MissingFileError


def concept_of(stimulus: str) -> str:
  """'ankle_boot13_01b.jpg' -> 'ankle_boot13' (never a prefix match: 'ant' != 'anteater')."""
  return stimulus.rsplit("_", 1)[0]


IMAGE_LAYOUTS = ("things", "flat")


def stimulus_paths(images_dir: str | os.PathLike, stimuli: Sequence[str], layout: str = "things") -> list[pathlib.Path]:
  """Paths of `stimuli` under an image folder; FileNotFoundError listing the missing images.

  Args:
    images_dir: layout "things": the folder containing `object_images/` (or the `object_images` folder
      itself), images at `object_images/<concept>/<stimulus>`; layout "flat": images at
      `images_dir/<stimulus>` (`stimulus` may contain sub-folders), e.g. for RDMs given as RDMs.
    stimuli: [n] stimulus file names, e.g. 'acorn_01b.jpg'.

  Returns:
    [n] paths in the order of `stimuli`.

  Raises:
    FileNotFoundError: the folder is missing, or some images are; the message gives how many, the
      folder and layout searched, and the first 20 missing stimulus names with their expected paths.
  """
  if layout not in IMAGE_LAYOUTS:
    raise ValueError(f"image layout must be one of {IMAGE_LAYOUTS}, got {layout!r}")
  root = pathlib.Path(images_dir)
  if not root.is_dir():
    raise MissingFileError(f"Stimulus image folder {root} does not exist")
  if layout == "things":
    if (root / "object_images").is_dir():
      root = root / "object_images"
    paths = [root / concept_of(s) / s for s in stimuli]
    expected = "object_images/<concept>/<stimulus>"
  else:
    paths = [root / s for s in stimuli]
    expected = "<images_dir>/<stimulus>"
  missing = [(s, p) for s, p in zip(stimuli, paths) if not p.is_file()]
  if missing:
    shown = "\n  ".join(f"{s}  (expected {p})" for s, p in missing[:20])
    more = f"\n  … and {len(missing) - 20} more" if len(missing) > 20 else ""
    raise MissingFileError(
      f"{len(missing)} of {len(paths)} stimulus images are missing under {root} "
      f"(expected layout {expected}); missing stimuli:\n  {shown}{more}"
    )
  return paths


def resize_shorter_and_crop(image: Image.Image, size: int) -> Image.Image:
  """torchvision Resize(size) (bilinear, antialiased) then CenterCrop(size), on a PIL RGB image."""
  w, h = image.size
  if w <= h:
    new_w, new_h = size, int(size * h / w)
  else:
    new_w, new_h = int(size * w / h), size
  image = image.resize((new_w, new_h), Image.BILINEAR)
  top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
  return image.crop((left, top, left + size, top + size))


def read_image_files(paths: Sequence[os.PathLike]) -> list[bytes]:
  """The encoded bytes of each image file [n] (read once; decoded per resolution by `decode_images`)."""
  out = []
  for p in paths:  # host-side I/O, once per run
    try:
      out.append(pathlib.Path(p).read_bytes())
    except OSError as e:
      raise DataError(f"{p}: cannot read the stimulus image ({e})") from None
  return out


def decode_images(blobs: Sequence[bytes], size: int, names: Sequence[str] | None = None) -> np.ndarray:
  """Decodes and transforms encoded images to float32 [n, size, size, 3] in [0, 1] (not yet normalised).

  names: [n] file names for error messages (default: the position)."""
  out = np.empty((len(blobs), size, size, 3), np.float32)
  for k, blob in enumerate(blobs):
    try:
      with Image.open(io.BytesIO(blob)) as im:
        out[k] = np.asarray(resize_shorter_and_crop(im.convert("RGB"), size), np.float32) / 255.0
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError ... for damaged files
      where = names[k] if names is not None else f"#{k}"
      raise DataError(
        f"{where}: cannot decode the stimulus image ({type(e).__name__}: {e})",
        hint="replace the file with an intact JPEG/PNG (a truncated or empty file cannot be used)",
      ) from None
  return out


def load_images(paths: Sequence[os.PathLike], size: int) -> np.ndarray:
  """Reads and transforms images to float32 [n, size, size, 3] in [0, 1] (not yet normalised)."""
  return decode_images(read_image_files(paths), size, [str(p) for p in paths])


def normalize(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """[..., 3] in [0, 1] -> (x - mean) / std, float32."""
  return ((images - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)
