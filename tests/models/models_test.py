"""Every model × every method: shapes, modes, FP endpoints, the binary-input rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnjax import models
from bnnjax import nn
from bnnjax.models import resnet
from bnnjax.models import sequential
from bnnjax.models import wrn
from tests.tiny_zoo import TINY
from tests.tiny_zoo import rngs

METHODS = ["fp", "bwn", "xnor", "bw_cf_2", "xnor_cf_2", "xnorpp_1", "xnorpp_2",
           "xnorpp_3", "xnorpp_4"]
NUM_CLASSES = 10


def build(name, method="xnor", *, input_shape=None, **overrides):
  shape, kwargs = TINY[name]
  return models.get_model(
      name, num_classes=NUM_CLASSES, input_shape=input_shape or shape,
      spec=nn.method_spec(method), rngs=rngs(), **{**kwargs, **overrides})


def images(shape, n=2, seed=0):
  return jax.random.normal(jax.random.key(seed), (n, *shape))


def first_and_last(model):
  """The first weight layer and the classifier of any zoo model."""
  if isinstance(model, sequential.LayerStringNet):
    first = model.ops[0]
    last = model.ops[model.classifier_index]
    return [getattr(op, "conv", None) or op.dense for op in (first, last)]
  return model.stem_conv, model.classifier


def quant_layers(model):
  return [m for _, m in nnx.iter_graph(model)
          if isinstance(m, (nn.QuantConv, nn.QuantDense))]


def shortcut_convs(model):
  out = []
  for _, m in nnx.iter_graph(model):
    if isinstance(m, resnet.Downsample):
      out.append(m.conv)
    if isinstance(m, wrn.WideBasicBlock) and m.shortcut is not None:
      out.append(m.shortcut)
  return out


def _record_inputs(monkeypatch):
  """Patches QuantConv/QuantDense to record (layer, input) and check input_size."""
  seen = []
  for cls in (nn.QuantConv, nn.QuantDense):
    original = cls.__call__

    def call(self, x, _original=original):
      if isinstance(self, nn.QuantConv):
        assert self.input_size == tuple(x.shape[1:3]), "input_size not tracked"
      seen.append((self, x))
      return _original(self, x)

    monkeypatch.setattr(cls, "__call__", call)
  return seen


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(models.MODELS))
def test_forward_shapes_train_and_eval(name, method, monkeypatch):
  _record_inputs(monkeypatch)  # also asserts every conv's input_size matches its input
  model = build(name, method)
  x = images(TINY[name][0])
  for train in (True, False):
    logits, features = model(x, train=train, return_features=True)
    assert logits.shape == (2, NUM_CLASSES)
    assert features.ndim == 2 and features.shape[0] == 2
    assert features.shape[1] == first_and_last(model)[1].in_features
    assert bool(jnp.all(jnp.isfinite(logits))) and bool(jnp.all(jnp.isfinite(features)))
  np.testing.assert_array_equal(model(x), logits)  # default: eval, logits only


@pytest.mark.parametrize("name", list(models.MODELS))
def test_first_last_fp_by_default_and_quantized_with_flags(name):
  model = build(name, "xnor")
  first, last = first_and_last(model)
  layers = quant_layers(model)
  shortcuts = shortcut_convs(model)
  for layer in (first, last, *shortcuts):
    assert type(layer.kernel) is nnx.Param and layer.spec == nn.FP
  hidden = [l for l in layers if l is not first and l is not last
            and not any(l is s for s in shortcuts)]
  assert hidden and all(isinstance(l.kernel, nn.LatentWeight) for l in hidden)

  q = build(name, "xnor", quantize_first=True, quantize_last=True)
  first, last = first_and_last(q)
  for layer in (first, last):
    assert isinstance(layer.kernel, nn.LatentWeight) and layer.spec == nn.method_spec("xnor")
  for layer in shortcut_convs(q):
    assert type(layer.kernel) is nnx.Param and layer.spec == nn.FP
  x = images(TINY[name][0])
  assert q(x, train=True).shape == (2, NUM_CLASSES)


@pytest.mark.parametrize("name", list(models.MODELS))
def test_binary_inputs_are_never_relu_outputs(name, monkeypatch):
  """sign(relu(x)) = +1: every binary-input layer must see negative inputs too."""
  seen = _record_inputs(monkeypatch)
  model = build(name, "xnor", quantize_first=True, quantize_last=True)
  model(images(TINY[name][0]), train=True)
  binary = [(l, x) for l, x in seen if l.spec.binary_input]
  assert len(binary) == len([l for l in quant_layers(model) if l.spec.binary_input])
  for layer, x in binary:
    assert float(jnp.min(x)) < 0 < float(jnp.max(x)), layer


@pytest.mark.parametrize("name", list(models.MODELS))
def test_full_precision_inputs_are_pre_activated_by_relu(name, monkeypatch):
  """BWN hidden layers (and the FP classifier) see BN → ReLU outputs."""
  seen = _record_inputs(monkeypatch)
  model = build(name, "bwn")
  model(images(TINY[name][0]), train=True)
  first, last = first_and_last(model)
  checked = 0
  for layer, x in seen:
    if layer.spec == nn.method_spec("bwn") or layer is last:
      assert float(jnp.min(x)) >= 0, layer
      checked += 1
  assert checked >= 3


@pytest.mark.parametrize("name", list(models.MODELS))
def test_group_size_not_dividing_filters_raises(name):
  with pytest.raises(ValueError, match="group_size"):
    build(name, "xnor_cf_5")  # no tiny model has all hidden widths divisible by 5


def test_group_size_checked_on_quantized_classifier():
  with pytest.raises(ValueError, match="group_size=4.*c_out=10"):
    build("nin", "bw_cf_4", width_mult=1 / 8, quantize_last=True)


def test_unknown_model_name():
  with pytest.raises(ValueError, match=r"model_name='resnet19'.*resnet18.*wrn22.*nin"):
    models.get_model("resnet19", num_classes=10, input_shape=(32, 32, 3), spec=nn.FP,
                     rngs=nnx.Rngs(0))


def test_unknown_model_kwargs_are_all_named():
  with pytest.raises(TypeError, match=r"\['depht', 'withd'\].*'width', 'stem'"):
    models.get_model("resnet18", num_classes=10, input_shape=(32, 32, 3), spec=nn.FP,
                     rngs=nnx.Rngs(0), withd=4, depht=3)


def test_model_kwargs():
  assert models.model_kwargs("resnet18") == ("width", "stem", "reactnet")
  assert models.model_kwargs("wrn22") == ("widths", "dropout", "depth", "reactnet")
  assert models.model_kwargs("nin") == ("width_mult", "layers", "reactnet")


def test_bad_common_args():
  with pytest.raises(ValueError, match="input_shape"):
    build("resnet18", input_shape=(32, 32))
  with pytest.raises(ValueError, match="num_classes"):
    models.get_model("nin", num_classes=0, input_shape=(32, 32, 3), spec=nn.FP,
                     rngs=nnx.Rngs(0))


@pytest.mark.parametrize("name", ["wrn22", "alexnet"])
def test_dropout_is_random_in_train_and_off_in_eval(name):
  model = build(name, "fp")
  x = images(TINY[name][0])
  np.testing.assert_array_equal(model(x), model(x))
  assert not np.allclose(model(x, train=True), model(x, train=True))


def test_dropout_needs_a_dropout_stream():
  with pytest.raises(ValueError, match="dropout"):
    models.get_model("wrn22", num_classes=10, input_shape=(8, 8, 3), spec=nn.FP,
                     rngs=nnx.Rngs(params=0), widths=(4, 4, 8, 8), dropout=0.3)


@pytest.mark.parametrize("name", list(models.MODELS))
def test_batch_stats_update_in_train_only(name):
  model = build(name, "xnor")
  # Three examples: with two, a batch norm makes them exact negatives of each other,
  # so a following binary dense layer's outputs can cancel to a batch mean of exactly 0.
  x = images(TINY[name][0], n=3) + 1.0
  before = jax.tree.map(jnp.copy, nnx.state(model, nnx.BatchStat))
  model(x)
  jax.tree.map(np.testing.assert_array_equal, nnx.state(model, nnx.BatchStat), before)
  model(x, train=True)
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                                         nnx.state(model, nnx.BatchStat), before))
  assert all(changed)


@pytest.mark.parametrize("name", list(models.MODELS))
def test_features_enter_the_classifier(name):
  """logits = classifier(features); NIN: the 1×1 conv applied to the pooled features."""
  model = build(name, "xnor")
  logits, features = model(images(TINY[name][0]), return_features=True)
  last = first_and_last(model)[1]
  w = last.kernel[...].reshape(-1, NUM_CLASSES)
  np.testing.assert_allclose(logits, features @ w + last.bias[...], rtol=1e-4, atol=1e-5)


def test_jit_split_merge_like_the_trainer():
  model = build("resnet18", "xnorpp_3")
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit
  def fwd(params, rest, x):
    m = nnx.merge(graphdef, params, rest)
    return m(x, train=True, return_features=True)

  x = images(TINY["resnet18"][0])
  logits, features = fwd(params, rest, x)
  eager_logits, eager_features = build("resnet18", "xnorpp_3")(x, train=True,
                                                               return_features=True)
  np.testing.assert_allclose(logits, eager_logits, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(features, eager_features, rtol=1e-4, atol=1e-4)
