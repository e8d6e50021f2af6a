"""THINGS image layout and the evaluation transform (resize shorter side, centre crop, normalise)."""

import numpy as np
import pytest
from PIL import Image

from brainalign.data import images


def test_resize_shorter_side_then_centre_crop_hand_case(tmp_path):
  """A 60x30 (w x h) image whose columns encode their x position: at size 30 no resampling happens and the
  centre crop keeps columns 15..44 (torchvision CenterCrop: left = round((60 - 30) / 2))."""
  arr = np.zeros((30, 60, 3), np.uint8)
  arr[:, :, 0] = np.arange(60, dtype=np.uint8)[None, :] * 4
  p = tmp_path / "object_images" / "dog" / "dog_01b.png"
  p.parent.mkdir(parents=True)
  Image.fromarray(arr).save(p)
  out = images.load_images([p], 30)
  assert out.shape == (1, 30, 30, 3)
  np.testing.assert_allclose(out[0, 0, :, 0] * 255, np.arange(15, 45) * 4, atol=1e-4)


def test_downscaling_is_antialiased():
  """Shrinking a 1-px checkerboard 4x averages it to mid-grey (antialiased), instead of aliasing to 0 or 255."""
  board = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
  im = Image.fromarray(np.repeat(board[..., None], 3, -1))
  out = np.asarray(images.resize_shorter_and_crop(im, 16), np.float32)
  assert np.abs(out - 127.5).max() < 10


def test_normalisation_uses_the_training_mean_and_std():
  """(x - mean) / std per channel."""
  x = np.full((1, 2, 2, 3), 0.5, np.float32)
  out = images.normalize(x, np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.25, 0.1]))
  np.testing.assert_allclose(out[0, 0, 0], [0.8, 1.2, 2.0], rtol=1e-6)


def test_missing_images_are_listed_with_the_expected_layout(tmp_path):
  """Stimuli without an image file are named in the error, with the folder and layout searched."""
  (tmp_path / "object_images" / "ant").mkdir(parents=True)
  Image.new("RGB", (8, 8)).save(tmp_path / "object_images" / "ant" / "ant_01b.jpg")
  with pytest.raises(FileNotFoundError, match=r"(?s)1 of 2 stimulus images are missing.*anteater/anteater_01b.jpg"):
    images.stimulus_paths(tmp_path, ["ant_01b.jpg", "anteater_01b.jpg"])
  assert images.stimulus_paths(tmp_path, ["ant_01b.jpg"])[0].name == "ant_01b.jpg"
