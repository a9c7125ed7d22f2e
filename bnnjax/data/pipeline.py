"""Deterministic, resumable batching of image datasets on host.

A ``Pipeline`` turns one split into numpy batches
``{"image": float32 (B, H, W, C), "label": int32 (B,)}``. Every batch is a pure
function of ``(seed, step)``:

* training (``train=True``): epoch ``e = step // steps_per_epoch`` visits the
  examples in the order ``default_rng([seed, 0, e]).permutation(n)``; batch ``b`` of
  the epoch takes positions ``[b*B, (b+1)*B)`` of it. Augmentation draws from
  ``SeedSequence([seed, 1, step])``. Iteration is infinite and
  ``pipeline.iterate(start_step)`` yields exactly what an uninterrupted run yields
  from ``start_step`` on, which is how a run resumes from a checkpoint.
* evaluation (``train=False``): one pass in order, no randomness; the last batch
  is smaller when ``B`` does not divide ``n`` (unless ``drop_remainder``).

Small datasets (MNIST-like, CIFAR) are decoded once into memory and cached in the
process; large or variable-size ones (ImageNet) are read and decoded per example
from the tfds ArrayRecord source by a thread pool.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
from typing import Iterator, Protocol, Sequence

import numpy as np

from bnnjax.data import augment
from bnnjax.data import datasets

Batch = dict[str, np.ndarray]
_SHUFFLE_STREAM = 0
_AUGMENT_STREAM = 1
AUGMENTATIONS = ("none", "cifar", "imagenet")


class Loader(Protocol):
  """Reads uint8 NHWC images and int32 labels at given example indices."""

  num_examples: int
  image_shape: tuple[int, int, int]

  def load(self, indices: np.ndarray, seeds: Sequence[np.random.SeedSequence] | None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels at ``indices``; ``seeds[i]`` for example ``i``'s randomness."""


class ArrayLoader:
  """Examples held in memory: ``images`` uint8 (n, H, W, C), ``labels`` (n,)."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    if images.ndim != 4 or images.dtype != np.uint8:
      raise ValueError(f"images must be uint8 (n, H, W, C), got {images.dtype} "
                       f"{images.shape}.")
    if labels.shape != images.shape[:1]:
      raise ValueError(f"{labels.shape[0]} labels for {images.shape[0]} images.")
    self.images, self.labels = images, labels.astype(np.int32, copy=False)
    self.num_examples = images.shape[0]
    self.image_shape = tuple(images.shape[1:])

  def load(self, indices, seeds):
    del seeds  # in-memory images need no per-example randomness
    return self.images[indices], self.labels[indices]


class RecordLoader:
  """Examples decoded per item from a tfds source, in a thread pool.

  With ``augment == "imagenet"``: training takes a random-resized crop of side
  ``size`` (flipped with probability 1/2) with each example's own seed; evaluation
  resizes the shorter side to ``round(size * 256 / 224)`` and takes the central
  ``size x size``. Otherwise images are decoded and, if ``size`` is given, resized.
  """

  def __init__(self, source: datasets.ImageSource, *, num_examples: int,
               augment_kind: str, size: int | None, train: bool,
               workers: int | None = None):
    self.source = source
    self.num_examples = num_examples
    self.augment_kind, self.size, self.train = augment_kind, size, train
    channels = source.channels
    if augment_kind == "imagenet" or size is not None:
      self.image_shape = (size, size, channels)
    else:
      self.image_shape = tuple(source.shape)
    self._workers = workers or min(32, os.cpu_count() or 1)
    self._pool: concurrent.futures.ThreadPoolExecutor | None = None
    self._pool_lock = threading.Lock()

  def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
    with self._pool_lock:
      if self._pool is None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self._workers, thread_name_prefix="bnnjax-decode")
      return self._pool

  def _one(self, record, seed: np.random.SeedSequence | None) -> np.ndarray:
    """One decoded, cropped or resized uint8 HWC image."""
    channels = self.source.channels
    if self.augment_kind == "imagenet":
      image = self.source.pil_image(record)
      if self.train:
        return augment.random_resized_crop(
            image, np.random.default_rng(seed), size=self.size, channels=channels)
      return augment.resize_center_crop(
          image, size=self.size, resize_size=int(round(self.size * 256 / 224)),
          channels=channels)
    array = self.source.image_array(record)
    if self.size is not None:
      array = augment.resize(array[None], self.size)[0]
    return array

  def load(self, indices, seeds):
    """Decodes ``indices``; example ``i`` draws from ``seeds[i]``."""
    records = self.source.read(indices)
    seeds = list(seeds) if seeds is not None else [None] * len(records)
    images = list(self._executor().map(self._one, records, seeds))
    labels = np.asarray([self.source.label(r) for r in records], np.int32)
    return np.stack(images), labels


class Pipeline:
  """An iterable of numpy batches of one split, deterministic from ``(seed, step)``.

  With ``shard=(index, count)`` (one shard per process of a multi-host run) the
  pipeline yields rows ``[index*b, (index+1)*b)``, ``b = batch_size // count``, of
  each global batch, with exactly the augmentation draws those rows get in a
  single-process run; the shards of all processes together are the global batch.

  Evaluation with ``pad_remainder=True`` yields full-size batches whose last one is
  padded (repeating its last example) and carries ``"mask"`` (1 for real examples),
  so every batch has the same shape (one compilation, divisible by device counts).

  Attributes:
    num_examples: examples in the (possibly truncated) split.
    batch_size: examples per global batch (the last eval batch may be smaller).
    local_batch_size: examples per batch of this shard.
    steps_per_epoch: batches per pass over the split (``len(pipeline)``).
    image_shape: ``(H, W, C)`` of the batched images.
  """

  def __init__(self, loader: Loader, *, batch_size: int, train: bool, seed: int,
               mean: Sequence[float], std: Sequence[float], augment_kind: str = "none",
               drop_remainder: bool | None = None, name: str = "", split: str = "",
               shard: tuple[int, int] = (0, 1), pad_remainder: bool = False):
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
      raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    index, count = shard
    if not (0 <= index < count):
      raise ValueError(f"shard={shard!r}: need 0 <= index < count.")
    if batch_size % count:
      raise ValueError(f"batch_size={batch_size} is not divisible by the {count} "
                       "processes (shards) that share each batch.")
    self.shard = (int(index), int(count))
    self.local_batch_size = int(batch_size) // int(count)
    self.pad_remainder = bool(pad_remainder)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
      raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if augment_kind not in AUGMENTATIONS:
      raise ValueError(f"augment_kind={augment_kind!r}; allowed: {AUGMENTATIONS}.")
    channels = loader.image_shape[-1]
    if len(mean) != channels or len(std) != channels:
      raise ValueError(f"mean/std have {len(mean)}/{len(std)} entries for "
                       f"{channels}-channel images.")
    self.loader = loader
    self.name, self.split = name, split
    self.batch_size, self.train, self.seed = int(batch_size), bool(train), int(seed)
    self.mean, self.std = tuple(mean), tuple(std)
    self.augment_kind = augment_kind
    self.drop_remainder = train if drop_remainder is None else bool(drop_remainder)
    self.num_examples = loader.num_examples
    self.image_shape = tuple(loader.image_shape)
    if self.drop_remainder:
      self.steps_per_epoch = self.num_examples // self.batch_size
    else:
      self.steps_per_epoch = -(-self.num_examples // self.batch_size)
    if self.steps_per_epoch == 0:
      raise ValueError(
          f"batch_size={batch_size} leaves no batch: split {split!r} of {name!r} "
          f"has {self.num_examples} examples"
          + (" and drop_remainder=True." if self.drop_remainder else "."))
    self._perm_cache: collections.OrderedDict[int, np.ndarray] = (
        collections.OrderedDict())
    self._perm_lock = threading.Lock()

  def __len__(self) -> int:
    return self.steps_per_epoch

  def __repr__(self) -> str:
    return (f"Pipeline({self.name!r}, split={self.split!r}, train={self.train}, "
            f"batch_size={self.batch_size}, num_examples={self.num_examples}, "
            f"image_shape={self.image_shape}, seed={self.seed})")

  def permutation(self, epoch: int) -> np.ndarray:
    """Order of the examples in training epoch ``epoch``:
    ``default_rng([seed, 0, epoch]).permutation(num_examples)``."""
    with self._perm_lock:
      if epoch in self._perm_cache:
        self._perm_cache.move_to_end(epoch)
        return self._perm_cache[epoch]
    perm = np.random.default_rng([self.seed, _SHUFFLE_STREAM, epoch]).permutation(
        self.num_examples)
    with self._perm_lock:
      self._perm_cache[epoch] = perm
      while len(self._perm_cache) > 2:
        self._perm_cache.popitem(last=False)
    return perm

  def indices(self, step: int) -> np.ndarray:
    """Example indices of batch ``step`` (global step when training)."""
    if step < 0:
      raise IndexError(f"step must be >= 0, got {step}.")
    if self.train:
      epoch, b = divmod(step, self.steps_per_epoch)
      return self.permutation(epoch)[b * self.batch_size:(b + 1) * self.batch_size]
    if step >= self.steps_per_epoch:
      raise IndexError(f"step {step} is past the {self.steps_per_epoch} batches of "
                       "an evaluation pass.")
    lo = step * self.batch_size
    return np.arange(lo, min(lo + self.batch_size, self.num_examples))

  def batch(self, step: int) -> Batch:
    """Batch number ``step`` (this shard's rows of it): normalised float32 images,
    int32 labels, and with ``pad_remainder`` a float32 ``mask``."""
    idx = self.indices(step)
    n_real = len(idx)
    if self.pad_remainder and n_real < self.batch_size:
      idx = np.concatenate([idx, np.full(self.batch_size - n_real, idx[-1])])
    lo = self.shard[0] * self.local_batch_size
    hi = lo + self.local_batch_size if self.shard[1] > 1 else len(idx)
    example_seeds = batch_rng = None
    if self.train:
      batch_seed, example_seed = np.random.SeedSequence(
          [self.seed, _AUGMENT_STREAM, step]).spawn(2)
      batch_rng = np.random.default_rng(batch_seed)
      if isinstance(self.loader, RecordLoader):
        example_seeds = example_seed.spawn(len(idx))[lo:hi]
    images, labels = self.loader.load(idx[lo:hi], example_seeds)
    if self.train and self.augment_kind == "cifar":
      images = augment.pad_crop_flip(images, batch_rng, pad=4, total=len(idx), start=lo)
    out = {"image": augment.normalize(images, self.mean, self.std),
           "label": np.asarray(labels, np.int32)}
    if self.pad_remainder:
      out["mask"] = (np.arange(len(idx)) < n_real).astype(np.float32)[lo:hi]
    return out

  def iterate(self, start_step: int = 0, *, prefetch: int = 2) -> Iterator[Batch]:
    """Yields batches ``start_step, start_step + 1, ...``.

    Training iteration never ends; evaluation stops after the last batch of the
    pass. ``prefetch`` batches are computed ahead in a background thread (0: none);
    the batches do not depend on it.
    """
    stop = None if self.train else self.steps_per_epoch
    if prefetch <= 0:
      step = start_step
      while stop is None or step < stop:
        yield self.batch(step)
        step += 1
      return
    with concurrent.futures.ThreadPoolExecutor(
        1, thread_name_prefix="bnnjax-prefetch") as pool:
      pending: collections.deque = collections.deque()
      next_step = start_step
      try:
        while True:
          while len(pending) <= prefetch and (stop is None or next_step < stop):
            pending.append(pool.submit(self.batch, next_step))
            next_step += 1
          if not pending:
            return
          yield pending.popleft().result()
      finally:
        for future in pending:
          future.cancel()

  def __iter__(self) -> Iterator[Batch]:
    return self.iterate(0)


def from_arrays(images: np.ndarray, labels: np.ndarray, *, batch_size: int,
                train: bool, seed: int, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, augment_kind: str = "none",
                drop_remainder: bool | None = None, shard: tuple[int, int] = (0, 1),
                pad_remainder: bool = False) -> Pipeline:
  """A ``Pipeline`` over in-memory uint8 NHWC ``images`` (default mean = std = 0.5)."""
  channels = images.shape[-1]
  return Pipeline(ArrayLoader(images, labels), batch_size=batch_size, train=train,
                  seed=seed, mean=mean or (0.5,) * channels,
                  std=std or (0.5,) * channels, augment_kind=augment_kind,
                  drop_remainder=drop_remainder, name="<arrays>", shard=shard,
                  pad_remainder=pad_remainder)


def make_pipeline(name: str, *, split: str, batch_size: int, train: bool, seed: int,
                  data_dir: str | os.PathLike | None = None,
                  num_examples: int | None = None, image_size: int | None = None,
                  drop_remainder: bool | None = None, augment: bool = True,
                  shard: tuple[int, int] = (0, 1), pad_remainder: bool = False
                  ) -> Pipeline:
  """The batches of ``split`` of dataset ``name`` (see the module docstring).

  Args:
    name: tfds dataset name (``mnist``, ``fashion_mnist``, ``cifar10``,
      ``cifar100``, ``imagenet2012``, or any prepared tfds image dataset).
    split: tfds split (``"train"``, ``"test"``, ``"validation"``, ``"train[:10%]"``).
    batch_size: examples per batch.
    train: shuffle, augment and repeat forever (True) or one ordered pass (False).
    seed: non-negative integer from which shuffling and augmentation derive.
    data_dir: tfds data directory (default: ``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``).
    num_examples: use only the first ``num_examples`` examples of the split (all
      of them if the split is smaller).
    image_size: output side; MNIST-like and CIFAR images are resized once (e.g.
      28 -> 32), ImageNet crops are ``image_size`` instead of 224.
    drop_remainder: drop the last partial batch of each pass (default: ``train``).
    augment: apply the dataset's training augmentation when ``train``; False trains
      on un-augmented images (ImageNet-like data then gets the eval resize/crop).
    shard: ``(process_index, process_count)``: this process's rows of each batch
      (see :class:`Pipeline`).
    pad_remainder: evaluation only: pad the last batch to ``batch_size`` and add a
      ``"mask"`` of real examples.

  Raises:
    ValueError: unknown dataset name or split, invalid batch size or seed.
    DatasetNotPreparedError: a stock dataset is not prepared in ``data_dir``.
  """
  if num_examples is not None and num_examples <= 0:
    raise ValueError(f"num_examples must be positive or None, got {num_examples}.")
  if image_size is not None and image_size <= 0:
    raise ValueError(f"image_size must be positive or None, got {image_size}.")
  builder = datasets.get_builder(name, data_dir)
  rec = datasets.recipe(name, builder)
  source = datasets.ImageSource(builder, name, split)
  n = len(source) if num_examples is None else min(num_examples, len(source))
  if rec.augment != "imagenet" and datasets.fits_in_memory(source.shape, n):
    data_root = os.path.abspath(os.fspath(builder.data_dir))
    images, labels = datasets.load_arrays(
        source, num_examples=n, image_size=image_size,
        cache_key=(name, data_root, split))
    loader: Loader = ArrayLoader(images, labels)
  else:
    size = image_size or rec.image_size
    loader = RecordLoader(source, num_examples=n, augment_kind=rec.augment,
                          size=size, train=train and augment)
  mean, std = rec.mean, rec.std
  if len(mean) != loader.image_shape[-1]:  # e.g. grey images, colour statistics
    mean = (float(np.mean(mean)),) * loader.image_shape[-1]
    std = (float(np.mean(std)),) * loader.image_shape[-1]
  return Pipeline(loader, batch_size=batch_size, train=train, seed=seed, mean=mean,
                  std=std, augment_kind=rec.augment if augment else "none",
                  drop_remainder=drop_remainder, name=name, split=split, shard=shard,
                  pad_remainder=pad_remainder)
