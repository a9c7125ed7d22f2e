"""Host augmentation: exact crops and flips, output shapes, normalisation."""

import numpy as np
import PIL.Image
import pytest

from bnnjax.data import augment


def test_pad_crop_flip_is_a_shifted_possibly_flipped_window():
  rng = np.random.default_rng(0)
  images = rng.integers(1, 256, size=(16, 8, 8, 3), dtype=np.uint8)
  out = augment.pad_crop_flip(images, np.random.default_rng(1), pad=4)
  assert out.shape == images.shape and out.dtype == np.uint8
  # Replay the draws: offsets (n, 2) then flips (n,).
  replay = np.random.default_rng(1)
  offsets = replay.integers(0, 9, size=(16, 2))
  flips = replay.random(16) < 0.5
  padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
  for i in range(16):
    dy, dx = offsets[i]
    expected = padded[i, dy:dy + 8, dx:dx + 8]
    if flips[i]:
      expected = expected[:, ::-1]
    np.testing.assert_array_equal(out[i], expected)
  assert flips.any() and not flips.all()


def test_pad_crop_flip_deterministic_per_generator():
  images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  a = augment.pad_crop_flip(images, np.random.default_rng(7))
  b = augment.pad_crop_flip(images, np.random.default_rng(7))
  np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("hw", [(375, 500), (500, 333), (40, 40), (12, 300)])
def test_random_resized_crop_shape(hw):
  h, w = hw
  image = PIL.Image.fromarray(
      np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))
  for seed in range(5):
    out = augment.random_resized_crop(image, np.random.default_rng(seed), size=224)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8


def test_random_resized_crop_full_scale_is_resize():
  array = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
  image = PIL.Image.fromarray(array)
  out = augment.random_resized_crop(image, np.random.default_rng(0), size=64,
                                    scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
  np.testing.assert_array_equal(out, array)


def test_resize_center_crop():
  array = np.zeros((300, 400, 3), np.uint8)
  array[:, 200:] = 255  # right half white
  out = augment.resize_center_crop(PIL.Image.fromarray(array), size=224,
                                   resize_size=256)
  assert out.shape == (224, 224, 3)
  # 400x300 -> 341x256, central 224 columns straddle the edge in the middle.
  assert out[:, :100].max() == 0 and out[:, 124:].min() == 255


def test_resize_grey_batch():
  images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
  out = augment.resize(images, 32)
  assert out.shape == (3, 32, 32, 1) and out.dtype == np.uint8
  assert augment.resize(images, 28) is images


def test_normalize():
  images = np.array([[[[0, 255]]]], np.uint8).reshape(1, 1, 1, 2)
  out = augment.normalize(images, mean=(0.5, 0.0), std=(0.5, 1.0))
  assert out.dtype == np.float32
  np.testing.assert_allclose(out.ravel(), [-1.0, 1.0], rtol=1e-6)
