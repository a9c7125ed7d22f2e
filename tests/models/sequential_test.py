"""NIN, VGG-7, AlexNet from the cross-filter paper's layer strings."""

import jax
import numpy as np
import pytest
from flax import nnx

from bnnjax import models
from bnnjax import nn
from bnnjax.models import sequential


def n_params(model, kind=nnx.Param):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, kind)))


def abstract(name, method="fp", **kw):
  kw.setdefault("num_classes", 10)
  kw.setdefault("input_shape", (32, 32, 3))
  return nnx.eval_shape(lambda: models.get_model(
      name, spec=nn.method_spec(method), rngs=nnx.Rngs(0), **kw))


def weight_layers(model):
  return [getattr(op, "conv", None) or op.dense for op in model.ops
          if isinstance(op, (sequential._ConvOp, sequential._DenseOp))]


def forward_shapes(model, input_shape, train=True):
  x = jax.ShapeDtypeStruct((2, *input_shape), np.float32)
  return nnx.eval_shape(lambda m, x: m(x, train=train, return_features=True), model, x)


def test_strings_are_the_papers():
  assert sequential.NIN_LAYERS == (
      "192-C5 + 160-C1 + 96-C1 + MP2 + 192-C5 + 2x(192-C1) + AP2 + 192-C3 + 192-C1 + "
      "10-C1 + AP1")
  assert sequential.ALEXNET_PAPER_LAYERS == (
      "96C11 + 256C5 + 2x(384C3) + 256C3 + MP2 + 2x(L4096) + L1000")
  assert sequential.VGG7_LAYERS == (
      "2×(128-C3) + MP2 + 2×(256-C3) + MP2 + 2×(512-C3) + MP2 + 1024-FC + Softmax")


def test_nin():
  # Convs: 5·5·3·192 + 192·160 + 160·96 + 5·5·96·192 + 2·192·192 + 3·3·192·192
  #   + 192·192 + (192·10 + 10) = 965,578; BN before the 8 hidden+last convs
  #   2 × (192 + 160 + 96 + 5·192) = 2,816. Total 968,394 (NIN's ≈0.97M).
  model = abstract("nin")
  assert n_params(model) == 968_394
  layers = weight_layers(model)
  assert [l.out_features for l in layers] == [192, 160, 96, 192, 192, 192, 192, 192, 10]
  assert [l.kernel_size[0] for l in layers] == [5, 1, 1, 5, 1, 1, 3, 1, 1]
  # MP2 / AP2: 3×3, stride 2, pad 1: 32 → 16 → 8; AP1: global.
  assert [l.input_size for l in layers] == [(32, 32)] * 3 + [(16, 16)] * 3 + [(8, 8)] * 3
  logits, features = forward_shapes(model, (32, 32, 3))
  assert logits.shape == (2, 10) and features.shape == (2, 192)
  mnist = abstract("nin", "xnorpp_2", input_shape=(28, 28, 1))
  assert weight_layers(mnist)[-2].gamma_alpha.shape == (7, 7, 192)
  assert forward_shapes(mnist, (28, 28, 1))[0].shape == (2, 10)


def test_vgg7():
  # Convs 3·3·(3·128 + 128·128 + 128·256 + 256·256 + 256·512 + 512·512) = 4,574,592;
  # 1024-FC 4·4·512·1024 = 8,388,608; classifier 1024·10 + 10 = 10,250;
  # BN 2 × (128 + 128 + 256 + 256 + 512 + 8,192 + 1,024) = 20,992. Total 12,994,442.
  model = abstract("vgg7")
  assert n_params(model) == 12_994_442
  assert [l.out_features for l in weight_layers(model)] == [128, 128, 256, 256, 512,
                                                             512, 1024, 10]
  logits, features = forward_shapes(model, (32, 32, 3))
  assert logits.shape == (2, 10) and features.shape == (2, 1024)
  assert weight_layers(abstract("vgg7", input_shape=(28, 28, 1)))[6].in_features == 3 * 3 * 512


def test_alexnet_imagenet():
  # 227×227: C11/4 → 55, MP → 27, C5 → 27, MP → 13, C3 ×3 → 13, MP → 6.
  # Weights: convs 34,848 + 614,400 + 884,736 + 1,327,104 + 884,736 = 3,745,824;
  # fc6 9,216·4,096, fc7 4,096², fc8 4,096·1,000 + 1,000 → 62,368,776 (AlexNet's
  # 62.4M, LRN replaced by BN); BN 2 × (96 + 256 + 384 + 384 + 9,216 + 4,096 + 4,096)
  # = 37,056. Total 62,405,832.
  model = abstract("alexnet", num_classes=1000, input_shape=(227, 227, 3))
  assert n_params(model) == 62_405_832
  layers = weight_layers(model)
  assert layers[0].strides == (4, 4) and layers[0].padding == ((0, 0), (0, 0))
  assert [l.input_size for l in layers[:5]] == [(227, 227), (27, 27)] + [(13, 13)] * 3
  assert layers[5].in_features == 6 * 6 * 256
  dense_ops = [op for op in model.ops if isinstance(op, sequential._DenseOp)]
  assert [op.pre.dropout is not None and op.pre.dropout.rate for op in dense_ops] == [
      False, 0.5, 0.5]
  assert weight_layers(abstract("alexnet", input_shape=(224, 224, 3)))[5].in_features == (
      5 * 5 * 256)


@pytest.mark.parametrize("shape,flat", [((32, 32, 3), 3 * 3), ((28, 28, 1), 2 * 2)])
def test_alexnet_small_inputs_use_stride_1(shape, flat):
  model = abstract("alexnet", "xnorpp_4", input_shape=shape, width_mult=1 / 16)
  layers = weight_layers(model)
  assert layers[0].strides == (1, 1) and layers[0].padding == ((5, 5), (5, 5))
  assert layers[5].in_features == flat * 16
  assert forward_shapes(model, shape)[0].shape == (2, 10)


def test_alexnet_too_small_names_input_shape():
  with pytest.raises(ValueError, match=r"input_shape=\(8, 8, 3\)"):
    abstract("alexnet", input_shape=(8, 8, 3))
  with pytest.raises(ValueError, match=r"input_shape=\(32, 32, 3\)"):
    abstract("alexnet", input_shape=(32, 32, 3), first_stride=4)


def test_alexnet_paper_string_literally():
  model = abstract("alexnet", input_shape=(227, 227, 3), width_mult=1 / 64,
                   layers=sequential.ALEXNET_PAPER_LAYERS)
  assert weight_layers(model)[5].in_features == 27 * 27 * 4  # the one MP2: 55 → 27


def test_width_mult():
  model = abstract("nin", width_mult=0.5)
  assert [l.out_features for l in weight_layers(model)] == [96, 80, 48] + [96] * 5 + [10]


def test_generic_layer_string_net():
  model = nnx.eval_shape(lambda: sequential.LayerStringNet(
      "2x(8-C3 + MP2) + L16 + L16", pools={"MP2": sequential.PoolGeometry(2, 2)},
      num_classes=5, input_shape=(8, 8, 1), spec=nn.method_spec("xnor"),
      rngs=nnx.Rngs(0)))
  assert [l.out_features for l in weight_layers(model)] == [8, 8, 16, 5]
  assert weight_layers(model)[2].in_features == 2 * 2 * 8
  assert forward_shapes(model, (8, 8, 1))[1].shape == (2, 16)


@pytest.mark.parametrize("layers,match", [
    ("8-C3 + MP3", "MP3"),
    ("8-C3", "ends with"),
    ("L8 + 8-C3", "conv after"),
    ("MP2", "no conv or dense"),
    ("Softmax + L8", "Softmax"),
])
def test_bad_layer_strings(layers, match):
  with pytest.raises(ValueError, match=match):
    abstract("vgg7", layers=layers)


def test_alexnet_default_stride_threshold():
  for size, stride in [(64, 1), (95, 1), (96, 4), (224, 4)]:
    model = abstract("alexnet", input_shape=(size, size, 3), width_mult=1 / 64)
    assert weight_layers(model)[0].strides == (stride, stride), size
