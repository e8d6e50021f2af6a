"""A small data set given as RDMs, for end-to-end tests on any (non-THINGS) data: a MATLAB .mat in the classic
92-image struct format ('ROI | SUBJECT | Session: k' names), a stimulus list and a flat folder of images.

The brain RDMs are the correlation distances of random patterns that share a component with the pixels of the
images, so models have something to align with; they are real RDMs (symmetric, zero diagonal).
"""

import pathlib

import numpy as np
import scipy.io
from PIL import Image
from scipy.spatial.distance import pdist, squareform

from brainalign.configs import demo


def write(
  root: pathlib.Path,
  *,
  n: int = 16,
  subjects=("S1", "S2", "S3", "S4"),
  sessions: int = 2,
  roi: str = "hIT",
  seed: int = 0,
) -> dict:
  """Writes brain.mat, stimuli.txt and imgs/ under root; returns their paths and the session RDMs
  {"rdms": {(subject, session): [P] float64}}."""
  rng = np.random.default_rng(seed)
  root.mkdir(parents=True, exist_ok=True)
  names = [f"img_{k:02d}.png" for k in range(n)]
  (root / "imgs").mkdir(exist_ok=True)
  pixels = []
  for name in names:
    img = rng.integers(0, 256, (28, 36, 3), dtype=np.uint8)
    Image.fromarray(img).save(root / "imgs" / name)
    pixels.append(img[::4, ::4].reshape(-1).astype(np.float64))
  shared = np.stack(pixels)
  entries = [(s, k) for s in subjects for k in range(1, sessions + 1)]
  st = np.zeros((1, len(entries)), dtype=[("RDM", object), ("name", object)])
  rdms = {}
  for e, (subject, session) in enumerate(entries):
    patterns = shared / shared.std() + rng.normal(scale=2.0, size=shared.shape)
    rdms[(subject, session)] = pdist(patterns, "correlation")
    st[0, e]["RDM"] = squareform(rdms[(subject, session)])
    st[0, e]["name"] = f"{roi} | {subject} | Session: {session}"
  scipy.io.savemat(root / "brain.mat", {"RDMs": st})
  (root / "stimuli.txt").write_text("\n".join(names) + "\n")
  return {
    "mat": root / "brain.mat",
    "stimuli": root / "stimuli.txt",
    "images": root / "imgs",
    "names": names,
    "rdms": rdms,
  }


def locate(root: pathlib.Path) -> dict:
  """The paths of a data set `write` made under root (without writing anything)."""
  names = [line for line in (root / "stimuli.txt").read_text().splitlines() if line]
  return {"mat": root / "brain.mat", "stimuli": root / "stimuli.txt", "images": root / "imgs", "names": names}


def config(data: dict, cache_dir: pathlib.Path, *, rules=("random", "bp"), sessions="average"):
  """The tiny demo config pointed at the RDM data set: 1 epoch on 64 images, 32 px, all pairs."""
  c = demo.get_config("tiny")
  c.rules = rules
  c.brain.cache_dir = str(cache_dir)
  c.brain.source, c.brain.rdms_path = "rdms", str(data["mat"])
  c.brain.stimuli_file, c.brain.images_dir = str(data["stimuli"]), str(data["images"])
  c.brain.subjects, c.brain.rois, c.brain.rdms_sessions = (), (), sessions
  c.data.num_train, c.train.num_epochs, c.train.milestones = 64, 1, (0, 1)
  c.rule_configs.bp.schedule_epochs = 1
  c.eval.resolutions, c.eval.pair_sets = (32,), ("all",)
  return c
