"""WRN-22 (BONN Table 3): parameter counts, structure, dropout placement."""

import jax
import numpy as np
import pytest
from flax import nnx

from bnnjax import models
from bnnjax import nn


def n_params(model, kind=nnx.Param):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, kind)))


def abstract(method="fp", **kw):
  kw.setdefault("num_classes", 10)
  kw.setdefault("input_shape", (32, 32, 3))
  return nnx.eval_shape(lambda: models.get_model(
      "wrn22", spec=nn.method_spec(method), rngs=nnx.Rngs(0), **kw))


def test_parameter_count_16_16_32_64():
  # Convs (no bias): stem 3·3·3·16 = 432
  #   stage 1: 6 × 3·3·16·16                       =  13,824
  #   stage 2: 3·3·16·32 + 5 × 3·3·32·32 + 1×1 16·32 =  51,200
  #   stage 3: 3·3·32·64 + 5 × 3·3·64·64 + 1×1 32·64 = 204,800
  # BN (scale + bias), two per block + head: 2 × (3·32 + (48 + 2·64) + (96 + 2·128)
  #   + 64) = 1,376.  Classifier 64·10 + 10 = 650.
  # Total 272,282: BONN Table 3's "0.27M".
  assert n_params(abstract()) == 272_282


def test_parameter_count_64_64_128_256():
  # Convs: 1,728 + 221,184 + 819,200 + 3,276,800; BN 2 × 2,752; dense 2,570.
  # Total 4,326,986: BONN Table 3's "4.33M".
  assert n_params(abstract(widths=(64, 64, 128, 256), dropout=0.3)) == 4_326_986


def test_structure():
  model = abstract("xnor")
  assert len(model.blocks) == 9
  shortcuts = [b.shortcut for b in model.blocks if b.shortcut is not None]
  assert [s.kernel.shape for s in shortcuts] == [(1, 1, 16, 32), (1, 1, 32, 64)]
  assert all(s.spec == nn.FP and s.strides == (2, 2) for s in shortcuts)
  assert [b.output_size for b in model.blocks[::3]] == [(32, 32), (16, 16), (8, 8)]
  assert n_params(model, nn.LatentWeight) == 13_824 + 51_200 - 512 + 204_800 - 2_048


def test_dropout_between_the_two_convs():
  model = abstract(dropout=0.3)
  for b in model.blocks:
    assert b.preact1.dropout is None and b.preact2.dropout.rate == 0.3
  assert all(b.preact2.dropout is None for b in abstract().blocks)


def test_depth_and_widths_validation():
  with pytest.raises(ValueError, match="depth=20"):
    abstract(depth=20)
  with pytest.raises(ValueError, match="widths"):
    abstract(widths=(16, 32, 64))
  assert len(abstract(depth=16).blocks) == 6


def test_mnist_geometry():
  model = abstract("xnorpp_3", input_shape=(28, 28, 1), widths=(4, 4, 8, 8))
  assert [b.output_size for b in model.blocks[::3]] == [(28, 28), (14, 14), (7, 7)]
  x = jax.ShapeDtypeStruct((2, 28, 28, 1), np.float32)
  logits, features = nnx.eval_shape(
      lambda m, x: m(x, train=False, return_features=True), model, x)
  assert logits.shape == (2, 10) and features.shape == (2, 8)
