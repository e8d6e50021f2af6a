"""Errors on the real-data path name the file and the problem, through the whole prepare/probe path, and a
failed prepare leaves no cache behind. (Loader-level cases — missing file, missing/empty ROI, NaN, truncated
HDF5, bad StimulusMetadata — are in test_things.py.)"""

import pathlib
import shutil

import numpy as np
import pytest
import things_fixture
from PIL import Image

from brainalign import probe
from brainalign.configs import paper
from brainalign.data import things
from brainalign.data import things_writer as tw


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
  return things_fixture.write_fixture(tmp_path_factory.mktemp("things_err"))


def _config(fx, tmp_path, *, images=True):
  betas = tmp_path / "betas_csv"
  shutil.copytree(fx["betas_dir"], betas)
  images_dir = tmp_path / "images"
  images_dir.mkdir()
  if images:
    for stim in fx["expected_stimuli"]:
      p = images_dir / "object_images" / stim.rsplit("_", 1)[0] / stim
      p.parent.mkdir(parents=True, exist_ok=True)
      Image.new("RGB", (40, 30)).save(p)
  c = paper.get_config("tiny")
  c.brain.betas_dir, c.brain.images_dir, c.brain.cache_dir = str(betas), str(images_dir), str(tmp_path / "cache")
  c.eval.resolutions = (16,)
  return c


def _no_cache(c):
  return not list((pathlib.Path(c.brain.cache_dir) / "prepared").glob("*.npz"))


def test_stimulus_names_without_images_are_all_listed(fx, tmp_path):
  """When images of selected stimuli are missing, load_probe lists every missing stimulus with the path it
  expected (names from the StimulusMetadata vs files in the image folder)."""
  c = _config(fx, tmp_path)
  gone = ["ant_01b.jpg", "yo-yo_01b.jpg", "ping-pong_table_01b.jpg"]
  for stim in gone:
    (pathlib.Path(c.brain.images_dir) / "object_images" / stim.rsplit("_", 1)[0] / stim).unlink()
  with pytest.raises(FileNotFoundError) as err:
    probe.load_probe(c, mean=np.zeros(3), std=np.ones(3))
  msg = str(err.value)
  assert "3 of 12 stimulus images are missing" in msg and "object_images/<concept>/<stimulus>" in msg
  for stim in gone:
    assert (
      f"{stim}  (expected {pathlib.Path(c.brain.images_dir) / 'object_images' / stim.rsplit('_', 1)[0] / stim})" in msg
    )
  assert "dog_01b.jpg" not in msg


def test_nan_and_truncated_files_fail_prepare_without_a_cache(fx, tmp_path):
  """A NaN in an ROI voxel and a truncated ResponseData.h5 stop the prepare step with an error naming the
  file (and the voxel); no cache file is written."""
  c = _config(fx, tmp_path)
  betas = pathlib.Path(c.brain.betas_dir)
  md, vox, resp = (fx[k]["sub-03"] for k in ("stimulus_metadata", "voxel_metadata", "responses"))
  bad = resp.copy()
  bad[1, 7] = np.nan  # sub-03's first ROI block is hV4 (rows 0..2)
  tw.write_subject(betas, "sub-03", md, vox, bad)
  with pytest.raises(things.ThingsFormatError, match=r"sub-03_ResponseData\.h5.*NaN.*voxel_id\(s\) 1\b"):
    probe.prepare_step(c)
  assert _no_cache(c)
  path = betas / "sub-01_ResponseData.h5"
  with open(path, "r+b") as fh:
    fh.truncate(path.stat().st_size // 3)
  with pytest.raises(things.ThingsFormatError, match=r"sub-01_ResponseData\.h5.*truncated or corrupt"):
    probe.load_brain(c.brain)
  assert _no_cache(c)


def test_roi_definition_errors_name_file_and_column(fx, tmp_path):
  """An ROI defined on a column the file lacks names the VoxelMetadata file, the column and the available
  ones; an all-zero ROI says it has no voxels; an ROI without a definition names the config key."""
  c = _config(fx, tmp_path, images=False)
  c.brain.roi_definitions.FFA = ("FFA",)
  c.brain.rois = ("V1", "FFA")
  with pytest.raises(things.ThingsFormatError) as err:
    probe.load_brain(c.brain)
  assert "sub-01_VoxelMetadata.csv" in str(err.value) and "['FFA']" in str(err.value) and "'lFFA'" in str(err.value)
  c.brain.roi_definitions.FFA = ("lFFA", "rFFA")  # all zero in the fixture
  with pytest.raises(things.ThingsFormatError, match=r"sub-01_VoxelMetadata\.csv.*lFFA\|rFFA has no voxels"):
    probe.load_brain(c.brain)
  c.brain.rois = ("V1", "PPA")
  with pytest.raises(ValueError, match=r"\['PPA'\] have no definition in config\.brain\.roi_definitions"):
    probe.load_brain(c.brain)
  assert _no_cache(c)


def test_custom_roi_union_and_reliability_from_config(fx, tmp_path):
  """A configured union (EARLY = V1 | V2) and voxel_selection='reliability' give the loader's RDMs for
  those columns and threshold (oracle: load_things_fmri called directly)."""
  c = _config(fx, tmp_path, images=False)
  c.brain.roi_definitions.EARLY = ("V1", "V2")
  c.brain.rois = ("EARLY", "LOC")
  c.brain.voxel_selection, c.brain.nc_testset_min = "reliability", 25.0
  _, brain, _ = probe.load_brain(c.brain)
  want = things.load_things_fmri(
    fx["betas_dir"], rois={"EARLY": ("V1", "V2"), "LOC": ("lLOC", "rLOC")}, nc_testset_min=25.0
  )
  np.testing.assert_array_equal(brain.rdm_vectors, want.rdm_vectors)
  vox = fx["voxel_metadata"]["sub-01"]
  assert brain.n_voxels[0, 0] == int((((vox.V1 == 1) | (vox.V2 == 1)) & (vox.nc_testset > 25)).sum())
