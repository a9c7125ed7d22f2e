"""ResNet-18 (Bi-Real shortcuts): parameter count, stems, geometry."""

import jax
import numpy as np
import pytest
from flax import nnx

from bnnjax import models
from bnnjax import nn
from bnnjax.models import resnet


def n_params(model, kind=nnx.Param):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, kind)))


def abstract(method="fp", **kw):
  """The model's shapes only (nnx.eval_shape): full-size models cost nothing."""
  kw.setdefault("num_classes", 1000)
  kw.setdefault("input_shape", (224, 224, 3))
  return nnx.eval_shape(lambda: models.get_model(
      "resnet18", spec=nn.method_spec(method), rngs=nnx.Rngs(0), **kw))


def test_full_size_parameter_count():
  # Convs (no bias):  stem 7·7·3·64 = 9,408
  #   stage 1: 4 × 3·3·64·64                     =   147,456
  #   stage 2: 3·3·64·128 + 3 × 3·3·128·128      =   516,096
  #   stage 3: 3·3·128·256 + 3 × 3·3·256·256     = 2,064,384
  #   stage 4: 3·3·256·512 + 3 × 3·3·512·512     = 8,257,536
  #   downsample 1×1: 64·128 + 128·256 + 256·512 =   172,032
  # Classifier 512·1000 + 1000                   =   513,000
  #   → 11,679,912, exactly torchvision's ResNet-18 without its BN (11,689,512 − 9,600):
  #   the Bi-Real identity shortcuts add no parameter.
  # BN (scale + bias) over: stem 64; before each of the 16 3×3 convs 3,392 (= 4·64 +
  #   64 + 3·128 + 128 + 3·256 + 256 + 3·512); downsample 128 + 256 + 512; head 512
  #   → 4,864 channels → 9,728.
  # Total 11,689,640 (≈ 11.7M).
  assert n_params(abstract()) == 11_689_640
  # Binary kernels are LatentWeight (an nnx.Param): the same count for XNOR-Net ...
  xnor = abstract("xnor")
  assert n_params(xnor) == 11_689_640
  # ... of which the 16 block convs are binary: 147,456 + 516,096 + 2,064,384 + 8,257,536.
  assert n_params(xnor, nn.LatentWeight) == 10_985_472
  # XNOR-Net++ case 1 adds one α per filter of the binary convs: 4·64 + 4·128 + ...
  assert n_params(abstract("xnorpp_1"), nn.ScaleFactor) == 4 * (64 + 128 + 256 + 512)


def test_default_stem_follows_input_size():
  assert abstract(input_shape=(224, 224, 3)).stem == "imagenet"
  assert abstract(input_shape=(64, 64, 3)).stem == "imagenet"
  assert abstract(input_shape=(32, 32, 3)).stem == "small"
  assert abstract(input_shape=(32, 32, 3), stem="imagenet").stem == "imagenet"
  with pytest.raises(ValueError, match="stem='cifar'.*imagenet.*small"):
    abstract(input_shape=(32, 32, 3), stem="cifar")


def test_imagenet_stem_geometry_for_gamma_case_2():
  """224 → 112 (7×7/2) → 56 (max-pool) → 56, 28, 14, 7 over the four stages."""
  model = abstract("xnorpp_2")
  sizes = [(b.unit1.conv.input_size, b.unit1.output_size) for b in model.blocks[::2]]
  assert sizes == [((56, 56), (56, 56)), ((56, 56), (28, 28)), ((28, 28), (14, 14)),
                   ((14, 14), (7, 7))]
  assert model.blocks[-1].unit2.conv.gamma_alpha.shape == (7, 7, 512)


def test_mnist_odd_sizes():
  """28 → 14 → 7 → 4: the SAME-padded 2×2 average pool of the shortcut matches."""
  model = abstract("xnorpp_4", num_classes=10, input_shape=(28, 28, 1), width=4)
  assert model.blocks[-1].output_size == (4, 4)
  x = jax.ShapeDtypeStruct((2, 28, 28, 1), np.float32)
  logits, features = nnx.eval_shape(
      lambda m, x: m(x, train=True, return_features=True), model, x)
  assert logits.shape == (2, 10) and features.shape == (2, 32)


def test_structure_bi_real_units():
  model = abstract()
  units = [u for b in model.blocks for u in (b.unit1, b.unit2)]
  assert len(units) == 16
  downsample = [u for u in units if u.shortcut is not None]
  assert len(downsample) == 3
  for u in downsample:
    assert isinstance(u.shortcut, resnet.Downsample) and u.shortcut.stride == 2
    assert u.shortcut.conv.kernel_size == (1, 1) and u.shortcut.conv.spec == nn.FP

