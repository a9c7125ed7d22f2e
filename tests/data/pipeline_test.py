"""Pipeline logic on in-memory arrays and on tfds.testing.mock_data datasets."""

import itertools
import types

import numpy as np
import pytest
import tensorflow_datasets as tfds

from bnnjax import data
from bnnjax.data import datasets
from bnnjax.data import pipeline as pipeline_lib


@pytest.fixture(autouse=True)
def _fresh_cache():
  data.clear_cache()
  yield
  data.clear_cache()


def mnist_like(n=50, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, size=(n, 28, 28, 1), dtype=np.uint8)
  # Encode the example index in the label so batches can be traced back.
  labels = np.arange(n, dtype=np.int32)
  return images, labels


def take(it, k):
  return list(itertools.islice(it, k))


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])


# ---------------------------------------------------------------- in-memory arrays
def test_train_batch_shapes_and_normalisation():
  images, labels = mnist_like()
  p = data.from_arrays(images, labels, batch_size=8, train=True, seed=0,
                       mean=(0.1307,), std=(0.3081,))
  assert len(p) == 50 // 8 and p.image_shape == (28, 28, 1)
  b = next(iter(p))
  assert b["image"].shape == (8, 28, 28, 1) and b["image"].dtype == np.float32
  assert b["label"].shape == (8,) and b["label"].dtype == np.int32
  raw = images[b["label"]].astype(np.float32) / 255
  np.testing.assert_allclose(b["image"], (raw - 0.1307) / 0.3081, rtol=1e-5,
                             atol=1e-5)


def test_train_is_deterministic_and_seed_dependent():
  images, labels = mnist_like()
  make = lambda seed: data.from_arrays(images, labels, batch_size=8, train=True,
                                       seed=seed)
  assert_batches_equal(take(iter(make(3)), 20), take(iter(make(3)), 20))
  a, b = take(iter(make(3)), 1)[0], take(iter(make(4)), 1)[0]
  assert not np.array_equal(a["label"], b["label"])


def test_train_epochs_are_permutations_and_differ():
  images, labels = mnist_like(n=48)
  p = data.from_arrays(images, labels, batch_size=8, train=True, seed=0)
  batches = take(p.iterate(0, prefetch=0), 12)  # two epochs of 6 batches
  epoch0 = np.concatenate([b["label"] for b in batches[:6]])
  epoch1 = np.concatenate([b["label"] for b in batches[6:]])
  np.testing.assert_array_equal(np.sort(epoch0), np.arange(48))
  np.testing.assert_array_equal(np.sort(epoch1), np.arange(48))
  assert not np.array_equal(epoch0, epoch1)
  np.testing.assert_array_equal(epoch0, p.permutation(0))


def test_train_drops_remainder_and_repeats_forever():
  images, labels = mnist_like(n=50)
  p = data.from_arrays(images, labels, batch_size=8, train=True, seed=0)
  batches = take(iter(p), 3 * len(p) + 1)
  assert all(b["label"].shape == (8,) for b in batches)
  # Each epoch uses 48 distinct examples.
  epoch = np.concatenate([b["label"] for b in batches[:len(p)]])
  assert len(set(epoch.tolist())) == 48


@pytest.mark.parametrize("start", [0, 1, 5, 6, 13])
def test_resume_from_step_gives_identical_batches(start):
  images, labels = mnist_like(n=50)
  make = lambda: data.from_arrays(images, labels, batch_size=8, train=True, seed=11,
                                  augment_kind="cifar", mean=(0.5,), std=(0.5,))
  uninterrupted = take(make().iterate(0), start + 7)[start:]
  resumed = take(make().iterate(start), 7)
  assert_batches_equal(uninterrupted, resumed)
  # batch(step) is the same pure function.
  assert_batches_equal(resumed[:1], [make().batch(start)])


def test_prefetch_does_not_change_batches():
  images, labels = mnist_like(n=50)
  p = data.from_arrays(images, labels, batch_size=8, train=True, seed=2,
                       augment_kind="cifar")
  assert_batches_equal(take(p.iterate(3, prefetch=0), 9),
                       take(p.iterate(3, prefetch=4), 9))


@pytest.mark.parametrize("batch_size", [7, 10, 64])
def test_eval_covers_each_example_once_in_order(batch_size):
  images, labels = mnist_like(n=50)
  p = data.from_arrays(images, labels, batch_size=batch_size, train=False, seed=0)
  batches = list(p)
  assert len(batches) == len(p) == -(-50 // batch_size)
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]),
                                np.arange(50))
  assert batches[-1]["label"].shape[0] == 50 - batch_size * (len(p) - 1)
  # Evaluation has no randomness: a second pass is identical.
  assert_batches_equal(batches, list(p))


def test_eval_drop_remainder_and_resume():
  images, labels = mnist_like(n=50)
  p = data.from_arrays(images, labels, batch_size=8, train=False, seed=0,
                       drop_remainder=True)
  assert len(list(p)) == 6
  assert_batches_equal(list(p.iterate(4)), list(p)[4:])


def test_cifar_augmentation_only_in_training():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
  labels = np.arange(40, dtype=np.int32)
  mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
  ev = data.from_arrays(images, labels, batch_size=8, train=False, seed=0, mean=mean,
                        std=std, augment_kind="cifar")
  tr = data.from_arrays(images, labels, batch_size=8, train=True, seed=0, mean=mean,
                        std=std, augment_kind="cifar")
  b_ev, b_tr = next(iter(ev)), next(iter(tr))
  assert b_ev["image"].shape == b_tr["image"].shape == (8, 32, 32, 3)
  plain = (images[b_ev["label"]] / 255 - np.array(mean)) / np.array(std)
  np.testing.assert_allclose(b_ev["image"], plain, rtol=1e-5, atol=1e-5)
  plain_tr = (images[b_tr["label"]] / 255 - np.array(mean)) / np.array(std)
  assert not np.allclose(b_tr["image"], plain_tr)


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=64), "batch_size=64 leaves no batch"),
    (dict(batch_size=8, seed=-1), "seed"),
    (dict(batch_size=8, augment_kind="mixup"), "augment_kind"),
])
def test_invalid_arguments(kwargs, match):
  images, labels = mnist_like(n=50)
  kwargs = {"seed": 0, **kwargs}
  with pytest.raises(ValueError, match=match):
    data.from_arrays(images, labels, train=True, **kwargs)


# ---------------------------------------------------------------- tfds mock data
@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pipeline_with_mock_data(name, classes):
  with tfds.testing.mock_data(num_examples=40):
    info = data.dataset_info(name)
    assert info == data.DatasetInfo(name=name, num_classes=classes,
                                    image_shape=(32, 32, 3), num_train=40,
                                    num_test=40, splits=("train", "test"))
    p = data.make_pipeline(name, split="train", batch_size=16, train=True, seed=0)
    q = data.make_pipeline(name, split="train", batch_size=16, train=True, seed=0)
    assert isinstance(p.loader, pipeline_lib.ArrayLoader)
    batches = take(p.iterate(0), 5)
    assert_batches_equal(batches, take(q.iterate(0), 5))
    assert_batches_equal(batches[3:], take(q.iterate(3), 2))
    b = batches[0]
    assert b["image"].shape == (16, 32, 32, 3) and b["image"].dtype == np.float32
    assert b["label"].dtype == np.int32
    assert ((b["label"] >= 0) & (b["label"] < classes)).all()
    ev = data.make_pipeline(name, split="test", batch_size=16, train=False, seed=0)
    assert [x["label"].shape[0] for x in ev] == [16, 16, 8]


def test_num_examples_and_image_size_with_mock_data():
  with tfds.testing.mock_data(num_examples=30):
    p = data.make_pipeline("cifar10", split="train", batch_size=4, train=False,
                           seed=0, num_examples=10, image_size=40)
    assert p.num_examples == 10 and len(p) == 3
    assert next(iter(p))["image"].shape == (4, 40, 40, 3)
    assert data.dataset_info("cifar10", image_size=40).image_shape == (40, 40, 3)
    big = data.make_pipeline("cifar10", split="train", batch_size=4, train=False,
                             seed=0, num_examples=1000)
    assert big.num_examples == 30


def test_imagenet_pipeline_with_mock_data():
  with tfds.testing.mock_data(num_examples=12):
    info = data.dataset_info("imagenet2012")
    assert info.splits == ("train", "validation")
    assert info.image_shape == (224, 224, 3) and info.num_classes == 1000
    tr = data.make_pipeline("imagenet2012", split="train", batch_size=4, train=True,
                            seed=5, image_size=64)
    assert isinstance(tr.loader, pipeline_lib.RecordLoader)
    batches = take(tr.iterate(0), 4)
    assert batches[0]["image"].shape == (4, 64, 64, 3)
    assert batches[0]["image"].dtype == np.float32
    again = data.make_pipeline("imagenet2012", split="train", batch_size=4,
                               train=True, seed=5, image_size=64)
    assert_batches_equal(batches[2:], take(again.iterate(2), 2))
    ev = data.make_pipeline("imagenet2012", split="validation", batch_size=5,
                            train=False, seed=0)
    shapes = [x["image"].shape for x in ev]
    assert shapes == [(5, 224, 224, 3), (5, 224, 224, 3), (2, 224, 224, 3)]


def _concat_shards(batches):
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


@pytest.mark.parametrize("augment_kind", ["none", "cifar"])
def test_process_shards_together_are_the_single_process_batch(augment_kind):
  images, labels = mnist_like(40)
  make = lambda shard: pipeline_lib.from_arrays(
      images, labels, batch_size=8, train=True, seed=3, augment_kind=augment_kind,
      shard=shard)
  whole = take(make((0, 1)).iterate(0), 7)
  shards = [take(make((i, 4)).iterate(0), 7) for i in range(4)]
  assert shards[0][0]["image"].shape == (2, 28, 28, 1)
  for step in range(7):
    joined = _concat_shards([s[step] for s in shards])
    np.testing.assert_array_equal(joined["image"], whole[step]["image"])
    np.testing.assert_array_equal(joined["label"], whole[step]["label"])


def test_imagenet_shards_get_the_single_process_crops():
  with tfds.testing.mock_data(num_examples=12):
    make = lambda shard: data.make_pipeline(
        "imagenet2012", split="train", batch_size=4, train=True, seed=5, image_size=32,
        shard=shard)
    whole = take(make((0, 1)).iterate(0), 2)
    shards = [take(make((i, 2)).iterate(0), 2) for i in range(2)]
    for step in range(2):
      np.testing.assert_array_equal(
          _concat_shards([s[step] for s in shards])["image"], whole[step]["image"])


def test_eval_pad_remainder_masks_the_padding_and_shards():
  images, labels = mnist_like(10)
  make = lambda shard: pipeline_lib.Pipeline(
      pipeline_lib.ArrayLoader(images, labels), batch_size=4, train=False, seed=0,
      mean=(0.5,), std=(0.5,), shard=shard, pad_remainder=True)
  whole = list(make((0, 1)))
  assert [b["image"].shape[0] for b in whole] == [4, 4, 4]
  np.testing.assert_array_equal(whole[-1]["mask"], [1, 1, 0, 0])
  real = np.concatenate([b["label"][b["mask"] > 0] for b in whole])
  np.testing.assert_array_equal(real, np.arange(10))
  halves = [list(make((i, 2))) for i in range(2)]
  np.testing.assert_array_equal(halves[1][-1]["mask"], [0, 0])
  np.testing.assert_array_equal(halves[0][-1]["label"], [8, 9])


def test_shard_errors_name_the_problem():
  images, labels = mnist_like(10)
  with pytest.raises(ValueError, match="not divisible by the 3 processes"):
    pipeline_lib.from_arrays(images, labels, batch_size=4, train=True, seed=0,
                             shard=(0, 3))
  with pytest.raises(ValueError, match="shard"):
    pipeline_lib.from_arrays(images, labels, batch_size=4, train=True, seed=0,
                             shard=(2, 2))


# ------------------------------------------------------------------------ errors
@pytest.mark.parametrize("call", [
    lambda: data.make_pipeline("no_such_dataset", split="train", batch_size=8,
                               train=True, seed=0),
    lambda: data.dataset_info("no_such_dataset"),
    lambda: data.prepare("no_such_dataset"),
])
def test_unknown_dataset_names_field_and_embedded(call):
  with pytest.raises(ValueError, match=r"dataset='no_such_dataset'") as e:
    call()
  assert "mnist, fashion_mnist" in str(e.value)
  assert not isinstance(e.value, data.DatasetNotPreparedError)


def test_missing_stock_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(data.DatasetNotPreparedError) as e:
    data.make_pipeline("cifar10", split="train", batch_size=8, train=True, seed=0,
                       data_dir=tmp_path)
  message = str(e.value)
  assert isinstance(e.value, FileNotFoundError)
  assert "dataset='cifar10'" in message and str(tmp_path) in message
  assert "pip install 'bnnjax[tf]'" in message
  assert str(tmp_path / "downloads" / "manual") in message
  assert "cifar-10-binary.tar.gz" in message
  assert (f"tfds.builder('cifar10', data_dir='{tmp_path}')"
          ".download_and_prepare(file_format='array_record')") in message
  with pytest.raises(data.DatasetNotPreparedError):
    data.dataset_info("cifar10", data_dir=tmp_path)


def test_missing_imagenet_mentions_manual_archives(tmp_path):
  with pytest.raises(data.DatasetNotPreparedError, match="ILSVRC2012_img_train.tar"):
    data.dataset_info("imagenet2012", data_dir=tmp_path)


def test_tfrecord_only_dataset_says_to_convert():
  builder = types.SimpleNamespace(
      is_prepared=lambda: True, data_dir="/d/cifar10/3.0.2",
      info=types.SimpleNamespace(
          available_file_formats=lambda: {tfds.core.FileFormat.TFRECORD}))
  with pytest.raises(data.DatasetNotPreparedError,
                     match="(?s)only as tfrecord.*convert_format"):
    datasets._check_stock_prepared(builder, "cifar10")  # pylint: disable=protected-access


def test_recipes():
  assert datasets.recipe("cifar10:3.0.2").augment == "cifar"
  assert datasets.recipe("imagenet2012").test_split == "validation"
  assert datasets.recipe("imagenet2012_subset/1pct").augment == "imagenet"
  assert datasets.recipe("mnist").augment == "none"
