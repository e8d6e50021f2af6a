"""Bad input gets one clear block, before any expensive work (brainalign.cli, brainalign.validate).

Every case runs the command line in-process (`cli.main(argv)`, exactly what `python main.py` runs) and asserts:
the exit code (2 usage/config, 1 data/cache/workdir), one `brainalign: error:` block and no traceback, that the
message names the file and the field, that the command's own workdir is not created, and that a finished
workdir next to it is byte-identical afterwards. The faulty THINGS files are written with the project's
format-exact writer (brainalign.data.things_writer); no case may read a voxel row before failing (the reader
is replaced by one that fails the test), except the one whose fault is in the voxel data themselves.
"""

import hashlib
import io
import pathlib
import shutil
import time

import numpy as np
import pytest
import rdm_fixture
import things_fixture
from PIL import Image

from brainalign import cli, pipeline
from brainalign.data import things
from brainalign.data import things_writer as tw

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  """A THINGS-format fixture with images, and a finished run (RDM data set, untrained network) beside it."""
  root = tmp_path_factory.mktemp("bad_input")
  fx = things_fixture.write_fixture(root / "fmri")
  for stim in fx["expected_stimuli"]:
    p = root / "images" / "object_images" / stim.rsplit("_", 1)[0] / stim
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(p)
  data = rdm_fixture.write(root / "rdm")
  finished = root / "finished"
  pipeline.run(rdm_fixture.config(data, root / "cache", rules=("random",)), str(finished))
  return {"root": root, "fx": fx, "data": data, "finished": finished}


def _snapshot(folder: pathlib.Path) -> dict:
  return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _things_copy(env, tmp_path) -> tuple[pathlib.Path, pathlib.Path]:
  betas, imgs = tmp_path / "betas_csv", tmp_path / "images"
  shutil.copytree(env["fx"]["betas_dir"], betas)
  shutil.copytree(env["root"] / "images", imgs)
  return betas, imgs


def _things_argv(betas, imgs, tmp_path, *extra):
  return [
    "main.py",
    "--config=configs/paper.py:tiny",
    "--config.rules=('random',)",
    "--config.data.source=fashion_mnist_demo",
    "--config.data.normalization=train_set",
    "--config.data.num_test=100",
    "--config.eval.resolutions=(16,)",
    f"--config.brain.betas_dir={betas}",
    f"--config.brain.images_dir={imgs}",
    f"--config.brain.cache_dir={tmp_path / 'cache'}",
    f"--workdir={tmp_path / 'run'}",
    *extra,
  ]


def _rdm_argv(env, tmp_path, *extra):
  d = env["data"]
  return [
    "main.py",
    "--config=configs/demo.py:tiny",
    "--config.rules=('random',)",
    "--config.brain.source=rdms",
    f"--config.brain.rdms_path={d['mat']}",
    f"--config.brain.stimuli_file={d['stimuli']}",
    f"--config.brain.images_dir={d['images']}",
    "--config.brain.subjects=()",
    "--config.brain.rois=()",
    "--config.eval.resolutions=(32,)",
    "--config.eval.pair_sets=('all',)",
    "--config.data.num_train=64",
    f"--config.brain.cache_dir={env['root'] / 'cache'}",
    f"--workdir={tmp_path / 'run'}",
    *extra,
  ]


def _fail(env, tmp_path, monkeypatch, argv, code, *fragments, reads_voxels=False):
  """Runs argv; checks the exit code, the single error block and its fragments, and that nothing was written."""
  if not reads_voxels:

    def forbidden(*args, **kwargs):
      raise AssertionError("a voxel row was read before the check that should have failed first")

    monkeypatch.setattr(things, "read_voxel_rows", forbidden)
  before = _snapshot(env["finished"])
  err = io.StringIO()
  monkeypatch.chdir(ROOT)
  got = cli.main(argv, stdout=io.StringIO(), stderr=err)
  text = err.getvalue()
  assert got == code, text
  assert text.startswith("brainalign: error: ") and text.count("brainalign: error:") == 1, text
  assert "Traceback" not in text and len(text.splitlines()) <= 12, text
  for fragment in fragments:
    assert fragment in text, (fragment, text)
  assert not (tmp_path / "run").exists(), "a failed command left a workdir behind"
  assert _snapshot(env["finished"]) == before
  return text


CONFIG_CASES = {
  "seed_float": (["--config.seeds=(1,1.5)"], ["config.seeds", "1.5"]),
  "seed_text": (["--config.seeds=(abc,)"], ["config.seeds", "integers"]),
  "seed_duplicate": (["--config.seeds=(3,3)"], ["config.seeds", "more than once"]),
  "rule_duplicate": (["--config.rules=('random','random')"], ["config.rules", "more than once"]),
  "rule_unknown": (["--config.rules=('sgd',)"], ["config.rules", "'sgd'"]),
  "key_misspelt": (["--config.train.num_epoch=3"], ["config.train.num_epoch", "num_epochs"]),
  "value_type": (["--config.train.num_epochs=abc"], ["config.train.num_epochs", "abc"]),
  "milestone_beyond": (["--config.train.milestones=(0,9)"], ["config.train.milestones", "[9]"]),
  "bn_mode": (["--config.eval.bn_mode=train"], ["config.eval.bn_mode", "'train'"]),
  "pair_set": (["--config.eval.pair_sets=('within',)"], ["config.eval.pair_sets", "'within'"]),
  "resolution": (["--config.eval.resolutions=(0,)"], ["config.eval.resolutions", ">= 8"]),
  "batch_size": (["--config.train.batch_size=0"], ["config.train.batch_size", ">= 1"]),
  "comparator": (["--config.stats.comparator=pearson"], ["config.stats.comparator", "'pearson'"]),
  "variant": (
    ["--config.rules=('fa',)", "--config.rule_configs.fa.variant=hybrid"],
    ["config.rule_configs.fa.variant", "'hybrid'"],
  ),
  "unknown_flag": (["--bogus=1"], ["bogus"]),
  "config_file": (["--config=configs/nope.py"], ["configs/nope.py", "does not exist"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_errors_exit_2_naming_the_key(env, tmp_path, monkeypatch, case):
  extra, fragments = CONFIG_CASES[case]
  _fail(env, tmp_path, monkeypatch, _rdm_argv(env, tmp_path, *extra), 2, *fragments)


def test_undefined_roi_names_the_config_key(env, tmp_path, monkeypatch):
  betas, imgs = _things_copy(env, tmp_path)
  _fail(
    env,
    tmp_path,
    monkeypatch,
    _things_argv(betas, imgs, tmp_path, "--config.brain.rois=('V1','PPA')"),
    2,
    "config.brain.rois",
    "'PPA'",
    "roi_definitions",
  )


def test_betas_folder_that_does_not_exist(env, tmp_path, monkeypatch):
  _, imgs = _things_copy(env, tmp_path)
  _fail(
    env,
    tmp_path,
    monkeypatch,
    _things_argv(tmp_path / "nope", imgs, tmp_path),
    1,
    "config.brain.betas_dir",
    "the folder does not exist",
  )


def test_missing_subject_file(env, tmp_path, monkeypatch):
  betas, imgs = _things_copy(env, tmp_path)
  (betas / "sub-02_VoxelMetadata.csv").unlink()
  _fail(env, tmp_path, monkeypatch, _things_argv(betas, imgs, tmp_path), 1, "sub-02", "sub-02_VoxelMetadata.csv")


def test_mask_column_missing_in_the_third_subject_fails_before_any_voxel_row(env, tmp_path, monkeypatch):
  betas, imgs = _things_copy(env, tmp_path)
  fx = env["fx"]
  vox = fx["voxel_metadata"]["sub-03"].drop(columns=["IT"])
  tw.write_subject(betas, "sub-03", fx["stimulus_metadata"]["sub-03"], vox, fx["responses"]["sub-03"])
  _fail(env, tmp_path, monkeypatch, _things_argv(betas, imgs, tmp_path), 1, "sub-03_VoxelMetadata.csv", "['IT']")


def test_missing_stimulus_image_fails_before_any_voxel_row(env, tmp_path, monkeypatch):
  betas, imgs = _things_copy(env, tmp_path)
  (imgs / "object_images" / "ant" / "ant_01b.jpg").unlink()
  _fail(env, tmp_path, monkeypatch, _things_argv(betas, imgs, tmp_path), 1, "ant_01b.jpg", "missing")


def test_images_folder_that_does_not_exist(env, tmp_path, monkeypatch):
  betas, _ = _things_copy(env, tmp_path)
  _fail(
    env,
    tmp_path,
    monkeypatch,
    _things_argv(betas, tmp_path / "nope", tmp_path),
    1,
    "config.brain.images_dir",
    "does not exist",
  )


@pytest.mark.parametrize("mode", ["run", "prepare"])
def test_empty_jpeg_fails_run_and_prepare_before_any_voxel_row(env, tmp_path, monkeypatch, mode):
  betas, imgs = _things_copy(env, tmp_path)
  (imgs / "object_images" / "dog" / "dog_01b.jpg").write_bytes(b"")
  _fail(
    env, tmp_path, monkeypatch, _things_argv(betas, imgs, tmp_path, f"--mode={mode}"), 1, "dog_01b.jpg", "cannot decode"
  )


def test_truncated_hdf5_names_the_file(env, tmp_path, monkeypatch):
  betas, imgs = _things_copy(env, tmp_path)
  path = betas / "sub-01_ResponseData.h5"
  with open(path, "r+b") as f:
    f.truncate(path.stat().st_size // 3)
  _fail(env, tmp_path, monkeypatch, _things_argv(betas, imgs, tmp_path), 1, "sub-01_ResponseData.h5", "corrupt")


def test_nan_voxel_names_the_file_and_voxel(env, tmp_path, monkeypatch):
  betas, imgs = _things_copy(env, tmp_path)
  fx = env["fx"]
  bad = fx["responses"]["sub-03"].copy()
  bad[1, 7] = np.nan
  tw.write_subject(betas, "sub-03", fx["stimulus_metadata"]["sub-03"], fx["voxel_metadata"]["sub-03"], bad)
  _fail(
    env,
    tmp_path,
    monkeypatch,
    _things_argv(betas, imgs, tmp_path),
    1,
    "sub-03_ResponseData.h5",
    "NaN",
    reads_voxels=True,
  )


def test_unwritable_cache_dir_fails_within_seconds(env, tmp_path, monkeypatch):
  """(A file where the folder should be: unwritable even for root.) No voxel row is read."""
  betas, imgs = _things_copy(env, tmp_path)
  (tmp_path / "blocker").write_text("a file, not a folder")
  start = time.perf_counter()
  _fail(
    env,
    tmp_path,
    monkeypatch,
    _things_argv(betas, imgs, tmp_path, f"--config.brain.cache_dir={tmp_path}/blocker/c"),
    1,
    "config.brain.cache_dir",
    "blocker",
  )
  assert time.perf_counter() - start < 10


def test_unwritable_workdir(env, tmp_path, monkeypatch):
  (tmp_path / "blocker").write_text("a file, not a folder")
  _fail(
    env, tmp_path, monkeypatch, _rdm_argv(env, tmp_path, f"--workdir={tmp_path}/blocker/run"), 1, "--workdir", "blocker"
  )


def test_corrupt_prepared_cache_names_its_path_and_the_prepare_command(env, tmp_path, monkeypatch):
  betas, imgs = _things_copy(env, tmp_path)
  monkeypatch.chdir(ROOT)
  assert cli.main(_things_argv(betas, imgs, tmp_path, "--mode=prepare"), stdout=io.StringIO()) == 0
  (cache,) = (tmp_path / "cache" / "prepared").glob("brain-*.npz")
  cache.write_bytes(cache.read_bytes()[:1000])
  _fail(env, tmp_path, monkeypatch, _things_argv(betas, imgs, tmp_path), 1, str(cache), "--mode=prepare")


def test_num_test_beyond_the_source(env, tmp_path, monkeypatch):
  _fail(
    env,
    tmp_path,
    monkeypatch,
    _rdm_argv(env, tmp_path, "--config.data.num_test=5000"),
    2,
    "config.data.num_test=5000",
    "1000 test images",
  )


def test_missing_npz_training_file(env, tmp_path, monkeypatch):
  _fail(
    env,
    tmp_path,
    monkeypatch,
    _rdm_argv(env, tmp_path, "--config.data.source=npz", f"--config.data.path={tmp_path}/cifar.npz"),
    1,
    "data.path",
    "cifar.npz",
  )


def test_unprepared_tfds_dir_names_the_converter_and_leaves_no_workdir(env, tmp_path, monkeypatch):
  pytest.importorskip("tensorflow_datasets")
  _fail(
    env,
    tmp_path,
    monkeypatch,
    _rdm_argv(env, tmp_path, "--config.data.source=cifar10_tfds", f"--config.data.tfds_data_dir={tmp_path}/tfds"),
    1,
    "cifar10",
    "brainalign.data.cifar10",
  )


def test_missing_rdm_file(env, tmp_path, monkeypatch):
  _fail(
    env,
    tmp_path,
    monkeypatch,
    _rdm_argv(env, tmp_path, f"--config.brain.rdms_path={tmp_path}/x.mat"),
    1,
    "x.mat",
    "config.brain.rdms_path",
  )


def test_workdir_of_other_settings_is_left_as_it_is(env, tmp_path, monkeypatch):
  """The finished workdir, run again with other seeds: refused, and its files (run_info.json too) unchanged."""
  argv = [a if not a.startswith("--workdir=") else f"--workdir={env['finished']}" for a in _rdm_argv(env, tmp_path)]
  _fail(env, tmp_path, monkeypatch, argv + ["--config.seeds=(7,8)"], 1, "seeds: [1, 2] → [7, 8]", "--overwrite")


def test_corrupt_checkpoint_names_the_folder_without_orbax_noise(env, tmp_path, monkeypatch):
  copy = tmp_path / "copy"
  shutil.copytree(env["finished"], copy)
  for f in (copy / "checkpoints" / "random" / "0").rglob("*"):
    if f.is_file() and f.stat().st_size > 0:
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
  argv = [a if not a.startswith("--workdir=") else f"--workdir={copy}" for a in _rdm_argv(env, tmp_path)]
  text = _fail(env, tmp_path, monkeypatch, argv, 1, "checkpoints/random/0", "cannot restore")
  assert "tensorstore" not in text.lower() and "Event loop" not in text


def test_traceback_flag_shows_the_typed_exception(env, tmp_path, monkeypatch):
  """--traceback re-raises the user error (typed, for debugging and for library callers) instead of the block."""
  from brainalign import errors

  monkeypatch.chdir(ROOT)
  with pytest.raises(errors.ConfigError, match="config.seeds"):
    cli.main(_rdm_argv(env, tmp_path, "--config.seeds=(1,1.5)", "--traceback"), stderr=io.StringIO())


def test_main_py_prints_the_block_and_exit_code(tmp_path):
  """The real entry point, in a subprocess: exit 2, the block on stderr, no traceback."""
  import subprocess
  import sys

  proc = subprocess.run(
    [
      sys.executable,
      str(ROOT / "main.py"),
      "--config=configs/demo.py:tiny",
      "--config.seeds=(1,1.5)",
      f"--workdir={tmp_path / 'run'}",
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
  )
  assert proc.returncode == 2 and proc.stderr.startswith("brainalign: error: config.seeds")
  assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
