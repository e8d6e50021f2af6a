"""The prepare step (brainalign.data.prepare, probe.prepare_step, main.py --mode=prepare): the large files are
read once, later loads use the cache, and a stale cache is refused naming the changed file.

Oracles: a direct ``things.load_things_fmri`` of the same files (the cache must reproduce it exactly), file
system state (sizes, mtimes), and a loader patched to fail (proves the cache path never reads the files).
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import things_fixture
from PIL import Image

from brainalign import probe
from brainalign.configs import paper
from brainalign.data import prepare, things

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture()
def setup(tmp_path):
  fx = things_fixture.write_fixture(tmp_path / "fmri")
  images_dir = tmp_path / "images"
  rng = np.random.default_rng(0)
  for stim in fx["expected_stimuli"]:
    p = images_dir / "object_images" / stim.rsplit("_", 1)[0] / stim
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(p)
  c = paper.get_config("tiny")
  c.brain.betas_dir, c.brain.images_dir = str(fx["betas_dir"]), str(images_dir)
  c.brain.cache_dir = str(tmp_path / "cache")
  return fx, c


def _no_reading(monkeypatch):
  def fail(*a, **k):
    raise AssertionError("the large files were read although a valid cache exists")

  monkeypatch.setattr(things, "load_things_fmri", fail)
  monkeypatch.setattr(things, "read_voxel_rows", fail)


def _assert_same(a: things.BrainData, b: things.BrainData):
  np.testing.assert_array_equal(a.rdm_vectors, b.rdm_vectors)
  np.testing.assert_array_equal(a.runs, b.runs)
  np.testing.assert_array_equal(a.n_voxels, b.n_voxels)
  assert (a.subjects, a.rois, a.stimuli, a.concepts) == (b.subjects, b.rois, b.stimuli, b.concepts)


def test_cache_written_once_then_used(setup, monkeypatch):
  """First load builds the cache (equal to a direct load); the second never reads the source files and
  returns identical arrays; the cache is small and records each source file's size and mtime."""
  fx, c = setup
  direct = things.load_things_fmri(fx["betas_dir"])
  _, first, _ = probe.load_brain(c.brain)
  _assert_same(first, direct)
  cached = list((pathlib.Path(c.brain.cache_dir) / "prepared").glob("brain-*.npz"))
  assert len(cached) == 1
  with np.load(cached[0]) as z:
    import json

    meta = json.loads(str(z["meta"]))
  names = sorted(pathlib.Path(m["path"]).name for m in meta["manifest"])
  assert names == sorted(
    f"{s}_{k}" for s in fx["subjects"] for k in ("ResponseData.h5", "StimulusMetadata.csv", "VoxelMetadata.csv")
  )
  for m in meta["manifest"]:
    st = os.stat(m["path"])
    assert (m["size"], m["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
  _no_reading(monkeypatch)
  _, second, _ = probe.load_brain(c.brain)
  _assert_same(second, direct)
  assert "prepared cache" in second.source


@pytest.mark.parametrize("change", ["rewrite_h5", "touch_csv", "delete_h5"])
def test_stale_cache_is_refused_naming_the_file(setup, change):
  """After a source file changes (new content, only a new mtime, or deleted), loading refuses the cache
  with an error naming that file and the prepare command; --mode=prepare (prepare_step) rebuilds it and the
  rebuilt cache equals a direct load of the new files."""
  fx, c = setup
  probe.load_brain(c.brain)
  files = fx["files"]["sub-02"]
  if change == "rewrite_h5":
    resp = fx["responses"]["sub-02"] * 2.0 + np.random.default_rng(1).normal(size=fx["responses"]["sub-02"].shape)
    from brainalign.data import things_writer as tw

    tw.write_subject(fx["betas_dir"], "sub-02", fx["stimulus_metadata"]["sub-02"], fx["voxel_metadata"]["sub-02"], resp)
    target = files.responses
    st = os.stat(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a distinct mtime even on coarse clocks
  elif change == "touch_csv":
    target = files.voxel_metadata
    st = os.stat(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
  else:
    target = files.responses
    target.unlink()
  with pytest.raises(prepare.StaleCacheError) as err:
    probe.load_brain(c.brain)
  msg = str(err.value)
  assert str(target.resolve()) in msg and "--mode=prepare" in msg
  if change == "delete_h5":
    return
  path = probe.prepare_step(c)
  assert path.exists()
  _, rebuilt, _ = probe.load_brain(c.brain)
  _assert_same(rebuilt, things.load_things_fmri(fx["betas_dir"]))


def test_settings_select_their_own_cache_and_modes(setup, monkeypatch):
  """Another preparation (zscore=run) gets its own cache file with its own RDMs; prepared='require' refuses a
  missing cache; prepared='off' writes none."""
  fx, c = setup
  _, a, _ = probe.load_brain(c.brain)
  c.brain.zscore = "run"
  c.brain.prepared = "require"
  with pytest.raises(prepare.StaleCacheError, match="no prepared-brain cache.*--mode=prepare"):
    probe.load_brain(c.brain)
  c.brain.prepared = "off"
  _, b_off, _ = probe.load_brain(c.brain)
  assert len(list((pathlib.Path(c.brain.cache_dir) / "prepared").glob("*.npz"))) == 1
  c.brain.prepared = "auto"
  _, b, _ = probe.load_brain(c.brain)
  _assert_same(b, b_off)
  _assert_same(b, things.load_things_fmri(fx["betas_dir"], zscore="run"))
  assert np.abs(a.rdm_vectors - b.rdm_vectors).max() > 1e-3
  assert len(list((pathlib.Path(c.brain.cache_dir) / "prepared").glob("*.npz"))) == 2
  c.brain.prepared = "sometimes"
  with pytest.raises(ValueError, match="prepared must be one of"):
    probe.load_brain(c.brain)


def test_main_mode_prepare_cli(setup, tmp_path):
  """`python main.py --mode=prepare` writes the cache and prints its path; a missing stimulus image is
  reported by the prepare step, listing it."""
  fx, c = setup
  args = [
    sys.executable,
    str(ROOT / "main.py"),
    "--mode=prepare",
    "--config=configs/paper.py:tiny",
    f"--config.brain.betas_dir={c.brain.betas_dir}",
    f"--config.brain.images_dir={c.brain.images_dir}",
    f"--config.brain.cache_dir={c.brain.cache_dir}",
    "--config.brain.rois=('V1','LOC')",
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-3000:]
  line = [x for x in out.stdout.splitlines() if x.startswith("Prepared brain RDMs: ")]
  path = pathlib.Path(line[0].split(": ", 1)[1])
  assert path.exists() and path.parent == pathlib.Path(c.brain.cache_dir) / "prepared"
  missing = pathlib.Path(c.brain.images_dir) / "object_images" / "dog" / "dog_01b.jpg"
  missing.unlink()
  c.brain.rois = ("V1", "LOC")
  with pytest.raises(FileNotFoundError, match=r"(?s)1 of 12 stimulus images are missing.*dog_01b\.jpg"):
    probe.prepare_step(c)


def test_content_check_detects_an_edit_with_its_mtime_restored(setup):
  """Staleness by size + mtime (the default) cannot see a same-size edit whose mtime was put back; the opt-in
  config.brain.cache_check='content' compares the SHA-256 of every source file and refuses the cache."""
  fx, c = setup
  probe.prepare_step(c)
  path = pathlib.Path(fx["betas_dir"]) / "sub-02_StimulusMetadata.csv"
  st = path.stat()
  text = path.read_bytes()
  k = text.rindex(b"train")  # same length: train -> trail (a change the cache must not ignore)
  path.write_bytes(text[:k] + b"trail" + text[k + 5 :])
  os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
  assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
  probe.load_brain(c.brain)  # stat check: not detected (documented)
  c.brain.cache_check = "content"
  with pytest.raises(prepare.StaleCacheError, match=r"sub-02_StimulusMetadata\.csv: content differs"):
    probe.load_brain(c.brain)
