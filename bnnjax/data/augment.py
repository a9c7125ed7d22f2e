"""Image preprocessing and augmentation on host (numpy / PIL).

All functions are pure: every random choice is drawn from the ``numpy.random.Generator``
passed in, so a batch is a function of ``(seed, step)`` and can be recomputed when a
run resumes. Images are ``uint8`` in HWC (single image) or NHWC (batch) layout until
``normalize`` turns them into ``float32``.

The augmentations are the ones the BNN papers inherit from the ResNet recipes:

* CIFAR (He et al. 2016, §4.2): pad 4 pixels with zeros on each side, take a random
  32x32 crop, flip horizontally with probability 1/2 (``pad_crop_flip``).
* ImageNet (Szegedy et al. 2015; torchvision ``RandomResizedCrop``): crop a random
  area fraction in [0.08, 1] with aspect ratio in [3/4, 4/3] (log-uniform), resize
  to 224x224, flip with probability 1/2 (``random_resized_crop``); evaluation
  resizes the shorter side to 256 and takes the central 224x224
  (``resize_center_crop``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import PIL.Image

_RESAMPLE = PIL.Image.BILINEAR


def _to_pil(image: np.ndarray) -> PIL.Image.Image:
  """HWC uint8 (C = 1 or 3) -> PIL image (mode ``L`` or ``RGB``)."""
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  return PIL.Image.fromarray(np.ascontiguousarray(image))


def _to_array(image: PIL.Image.Image, channels: int) -> np.ndarray:
  """PIL image -> HWC uint8 array with ``channels`` channels."""
  mode = "L" if channels == 1 else "RGB"
  if image.mode != mode:
    image = image.convert(mode)
  array = np.asarray(image, dtype=np.uint8)
  return array[..., None] if array.ndim == 2 else array


def resize(images: np.ndarray, size: int) -> np.ndarray:
  """Resizes a uint8 NHWC batch to ``(N, size, size, C)`` with bilinear filtering.

  Returns the input unchanged when it already has that size.
  """
  if images.shape[1:3] == (size, size):
    return images
  out = np.empty((images.shape[0], size, size, images.shape[-1]), np.uint8)
  for i, image in enumerate(images):
    out[i] = _to_array(_to_pil(image).resize((size, size), _RESAMPLE), images.shape[-1])
  return out


def pad_crop_flip(images: np.ndarray, rng: np.random.Generator, *,
                  pad: int = 4, total: int | None = None, start: int = 0) -> np.ndarray:
  """CIFAR augmentation: zero-pad ``pad`` pixels, random HxW crop, random h-flip.

  For each image ``i`` draws offsets ``(dy, dx)`` uniformly in ``{0, ..., 2*pad}``
  and a flip bit with probability 1/2, and returns
  ``out[i] = flip_i(padded[i, dy:dy+H, dx:dx+W])``, same shape and dtype as
  ``images`` (NHWC). With ``total``, the draws are made for a batch of ``total``
  images and ``images`` get those of positions ``[start, start + n)``: a process's
  shard of a global batch is augmented exactly as in a single-process run.
  """
  n, h, w, _ = images.shape
  total = n if total is None else total
  if not 0 <= start <= total - n:
    raise ValueError(f"start={start} with {n} images does not fit in total={total}.")
  offsets = rng.integers(0, 2 * pad + 1, size=(total, 2))[start:start + n]
  flips = (rng.random(total) < 0.5)[start:start + n]
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  rows = offsets[:, :1] + np.arange(h)  # (n, h)
  cols = offsets[:, 1:] + np.arange(w)  # (n, w)
  cols = np.where(flips[:, None], cols[:, ::-1], cols)
  return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_resized_crop(image: PIL.Image.Image, rng: np.random.Generator, *,
                        size: int, channels: int = 3,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        flip: bool = True, attempts: int = 10) -> np.ndarray:
  """Inception-style crop: random area and aspect ratio, resized to ``size``.

  Up to ``attempts`` times draws an area ``A = U(scale) * H * W`` and a ratio
  ``r = exp(U(log ratio))``, giving a box ``w = round(sqrt(A r))``,
  ``h = round(sqrt(A / r))``; the first box that fits is placed uniformly at
  random. If none fits, falls back to the largest central box whose ratio is
  clipped to ``ratio`` (torchvision's rule). The box is resized to
  ``(size, size)`` bilinearly and, when ``flip``, mirrored with probability 1/2.

  Returns:
    uint8 array ``(size, size, channels)``.
  """
  width, height = image.size
  area = width * height
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  box = None
  for _ in range(attempts):
    target_area = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      box = (left, top, left + w, top + h)
      break
  if box is None:
    in_ratio = width / height
    if in_ratio < ratio[0]:
      w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
      w, h = int(round(height * ratio[1])), height
    else:
      w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    box = (left, top, left + w, top + h)
  out = image.resize((size, size), _RESAMPLE, box=box)
  if flip and rng.random() < 0.5:
    out = out.transpose(PIL.Image.FLIP_LEFT_RIGHT)
  return _to_array(out, channels)


def resize_center_crop(image: PIL.Image.Image, *, size: int, resize_size: int,
                       channels: int = 3) -> np.ndarray:
  """Evaluation crop: shorter side to ``resize_size``, then central ``size x size``.

  Returns:
    uint8 array ``(size, size, channels)``.
  """
  width, height = image.size
  s = resize_size / min(width, height)
  new_w, new_h = max(size, int(round(width * s))), max(size, int(round(height * s)))
  image = image.resize((new_w, new_h), _RESAMPLE)
  left, top = (new_w - size) // 2, (new_h - size) // 2
  return _to_array(image.crop((left, top, left + size, top + size)), channels)


def normalize(images: np.ndarray, mean: Sequence[float],
              std: Sequence[float]) -> np.ndarray:
  """``(images / 255 - mean) / std`` per channel, as float32 (NHWC in, NHWC out)."""
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  scale = (1.0 / (255.0 * std)).astype(np.float32)
  return images.astype(np.float32) * scale - (mean / std).astype(np.float32)
