"""Every result is tied to the inputs that made it (brainalign.provenance, brainalign.stages).

End to end on a small data set given as RDMs (tests/rdm_fixture.py): the same command twice gives identical files
and does no training or extraction; a changed input (seeds, a learning rate, the stimulus order, one image's
bytes) stops the run before any work with a message naming the change; with overwrite=True the results equal a
fresh run's exactly; runs killed with SIGKILL during training, a checkpoint write and a feature write resume to
byte-identical results and leave no temporary file behind.
"""

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import rdm_fixture
from PIL import Image

from brainalign import features, pipeline, provenance, rule_run, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ("alignment", "training", "summary", "diagnostics", "train_indices")


def test_fingerprint_is_canonical_and_differences_name_each_change():
  """Key order, tuples vs lists and equal arrays give one fingerprint; any value change gives another, and
  `differences` names exactly the changed keys (nested keys dotted, long lists summarised)."""
  a = {"b": (1, 2), "a": {"x": 1.5, "y": np.arange(3)}}
  b = {"a": {"y": np.arange(3), "x": 1.5}, "b": [1, 2]}
  assert provenance.fingerprint(a) == provenance.fingerprint(b)
  assert provenance.fingerprint({**a, "b": (1, 3)}) != provenance.fingerprint(a)
  assert provenance.fingerprint({**a, "a": {"x": 1.5, "y": np.arange(4)}}) != provenance.fingerprint(a)
  old = {"seeds": [1, 2], "rule_config": {"learning_rate": 1e-3, "b1": 0.9}, "images": [f"i{k}" for k in range(40)]}
  new = {
    "seeds": [7, 8],
    "rule_config": {"learning_rate": 2e-3, "b1": 0.9},
    "images": [f"i{k}" for k in range(40)][::-1],
  }
  lines = provenance.differences(old, new)
  assert lines[0].startswith("images: same items, other order; first at position 0")
  assert lines[1:] == ["rule_config.learning_rate: 0.001 → 0.002", "seeds: [1, 2] → [7, 8]"]
  up = provenance.Stage("up", (), {"k": 1})
  down = provenance.Stage("down", (), {"m": 1}, upstream=(up,))
  down2 = provenance.Stage("down", (), {"m": 1}, upstream=(provenance.Stage("up", (), {"k": 2}),))
  assert down.fingerprint != down2.fingerprint  # a change upstream makes the downstream stage stale
  assert provenance.differences(down.record_inputs(), down2.record_inputs()) == []  # ... reported upstream only


def _snapshot(workdir: pathlib.Path) -> dict:
  """{file: sha256} of the workdir; run_info.json without its "timing" (that invocation's seconds per stage)."""

  def content(p: pathlib.Path) -> bytes:
    if p.name != "run_info.json":
      return p.read_bytes()
    info = json.loads(p.read_text())
    info.pop("timing", None)
    return json.dumps(info, sort_keys=True).encode()

  return {
    str(p.relative_to(workdir)): hashlib.sha256(content(p)).hexdigest()
    for p in sorted(workdir.rglob("*"))
    if p.is_file()
  }


def _results_equal(a: pathlib.Path, b: pathlib.Path) -> None:
  """The tables, features and model RDMs of two workdirs are identical, byte for byte / exactly."""
  for name in RESULTS:
    assert (a / "results" / f"{name}.csv").read_bytes() == (b / "results" / f"{name}.csv").read_bytes(), name
  for folder in ("features", "rdms"):
    files_a = sorted(p.relative_to(a) for p in (a / folder).rglob("*.npz"))
    assert files_a == sorted(p.relative_to(b) for p in (b / folder).rglob("*.npz"))
    for rel in files_a:
      with np.load(a / rel) as za, np.load(b / rel) as zb:
        assert za.files == zb.files
        for k in za.files:
          np.testing.assert_array_equal(za[k], zb[k], err_msg=f"{rel}:{k}")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  root = tmp_path_factory.mktemp("provenance")
  data = rdm_fixture.write(root / "data")
  cache = root / "cache"
  workdir = root / "base"
  pipeline.run(rdm_fixture.config(data, cache, rules=("bp",)), str(workdir))
  return {"root": root, "data": data, "cache": cache, "workdir": workdir}


def _config(base, data=None, **changes):
  c = rdm_fixture.config(data or base["data"], base["cache"], rules=("bp",))
  for key, value in changes.items():
    node = c
    *path, last = key.split(".")
    for part in path:
      node = node[part]
    node[last] = value
  return c


def test_same_command_twice_gives_identical_files_and_does_no_work(base, monkeypatch, tmp_path):
  """The second run of the same command rewrites nothing that differs, trains no epoch and extracts nothing
  (counted by wrapping the epoch runner and the extractor)."""
  workdir = tmp_path / "w"
  shutil.copytree(base["workdir"], workdir)
  before = _snapshot(workdir)
  calls = {"epochs": 0, "extractions": 0}

  def counting(factory, key):
    def make(*args, **kwargs):
      fn = factory(*args, **kwargs)

      def wrapped(*a, **k):
        calls[key] += 1
        return fn(*a, **k)

      return wrapped

    return make

  monkeypatch.setattr(train, "make_epoch_runner", counting(train.make_epoch_runner, "epochs"))
  monkeypatch.setattr(features, "make_extractor", counting(features.make_extractor, "extractions"))
  out = pipeline.run(_config(base), str(workdir))
  assert calls == {"epochs": 0, "extractions": 0}
  assert out["work"] == {"bp": {"epochs_trained": 0, "features_extracted": 0}}
  assert _snapshot(workdir) == before
  timed = {r["stage"] for r in json.loads((workdir / "run_info.json").read_text())["timing"]["stages"]}
  assert {"load", "model RDMs", "RSA", "results", "other"} <= timed and "train" not in timed  # nothing trained


def _reordered_data(base, tmp_path):
  data = rdm_fixture.write(tmp_path / "data")  # same seed: the same files
  names = data["names"]
  data["stimuli"].write_text("\n".join(names[1:] + names[:1]) + "\n")
  return data


def _edited_image(base, tmp_path):
  data = rdm_fixture.write(tmp_path / "data")
  path = data["images"] / data["names"][3]
  img = np.asarray(Image.open(path)).copy()
  img[0, 0] = 255 - img[0, 0]
  Image.fromarray(img).save(path)
  return data


CHANGES = {
  "seeds": (lambda base, tmp: _config(base, seeds=(7, 8)), "seeds: [1, 2] → [7, 8]"),
  "learning_rate": (
    lambda base, tmp: _config(base, **{"rule_configs.bp.learning_rate": 2e-3}),
    "rule_config.learning_rate: 0.001 → 0.002",
  ),
  "stimulus_order": (lambda base, tmp: _config(base, _reordered_data(base, tmp)), "images: same items, other order"),
  "image_bytes": (lambda base, tmp: _config(base, _edited_image(base, tmp)), "image_files.img_03.png: sha256:"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_changed_input_stops_before_any_work_and_overwrite_equals_a_fresh_run(base, tmp_path, change, monkeypatch):
  """A command whose inputs differ from the workdir's stops with a ProvenanceError naming the change, leaving
  every file as it was and training nothing; with overwrite=True its results equal a fresh run's exactly."""
  make, expected = CHANGES[change]
  config = make(base, tmp_path)
  workdir = tmp_path / "w"
  shutil.copytree(base["workdir"], workdir)
  before = _snapshot(workdir)
  trained = []
  original = rule_run.train_and_extract
  monkeypatch.setattr(rule_run, "train_and_extract", lambda *a, **k: trained.append(1) or original(*a, **k))
  with pytest.raises(provenance.ProvenanceError) as e:
    pipeline.run(config, str(workdir))
  assert expected in str(e.value) and "--overwrite" in str(e.value) and "--workdir" in str(e.value)
  assert not trained and _snapshot(workdir) == before
  pipeline.run(config, str(workdir), overwrite=True)
  pipeline.run(config, str(tmp_path / "fresh"))
  _results_equal(workdir, tmp_path / "fresh")


KILL_SCRIPT = """
import os, pathlib, signal, sys
sys.path[:0] = [{root!r}, {tests!r}]
import rdm_fixture
from brainalign import checkpointing, io, pipeline
where, data_root, cache, workdir = sys.argv[1:]
data = rdm_fixture.locate(pathlib.Path(data_root))
config = rdm_fixture.config(data, pathlib.Path(cache), rules=("bp",))
kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
on_epoch = None
if where == "training":
  on_epoch = lambda rule, epoch: kill()
elif where == "checkpoint":
  save = checkpointing.save
  def killing_save(manager, epoch, state):
    save(manager, epoch, state)
    if epoch == 1:
      kill()  # the asynchronous commit of the epoch-1 checkpoint is still running
  checkpointing.save = killing_save
elif where == "features":
  write_npz = io.write_npz
  def killing_write(path, **arrays):
    if "epoch_0001" in str(path):
      with io.atomic_path(path) as tmp:
        tmp.write_bytes(b"PK partial")
        kill()
    write_npz(path, **arrays)
  io.write_npz = killing_write
pipeline.run(config, workdir, on_epoch=on_epoch)
"""


@pytest.mark.parametrize("where", ["training", "checkpoint", "features"])
def test_run_killed_with_sigkill_resumes_to_identical_results(base, tmp_path, where):
  """SIGKILL after epoch 1's log (before its checkpoint), while its checkpoint is being written, and halfway
  through writing its features file: the same command then resumes, removes what the killed write left behind,
  and gives the uninterrupted run's results exactly."""
  workdir = tmp_path / "w"
  script = KILL_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"))
  proc = subprocess.run(
    [sys.executable, "-c", script, where, str(base["data"]["mat"].parent), str(base["cache"]), str(workdir)],
    capture_output=True,
    text=True,
    env=os.environ.copy(),
  )
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
  assert not (workdir / "results" / "alignment.csv").exists()
  leftovers = list(workdir.rglob(".*.tmp")) + list(workdir.rglob("*orbax-checkpoint-tmp*"))
  if where == "features":
    assert leftovers  # the half-written file is there, under its temporary name only
    assert not (workdir / "features" / "bp" / "epoch_0001.npz").exists()
  pipeline.run(_config(base), str(workdir))
  assert not list(workdir.rglob(".*.tmp")) and not list(workdir.rglob("*orbax-checkpoint-tmp*"))
  _results_equal(workdir, base["workdir"])
