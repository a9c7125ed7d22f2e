"""quantize_model / quantize_params leave a model that runs; groups are selectable."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnjax import models
from bnnjax import nn
from bnnjax import ptq


@pytest.fixture(scope="module")
def tiny():
  model = models.get_model("resnet18", num_classes=3, input_shape=(8, 8, 1), spec=nn.FP,
                           rngs=nnx.Rngs(params=0), width=2)
  # non-trivial batch norm parameters and statistics, as after training
  for _, bn in nnx.iter_modules(model):
    if isinstance(bn, nnx.BatchNorm):
      r = jnp.arange(bn.mean.shape[0], dtype=jnp.float32)
      bn.mean[...] = 0.1 * r
      bn.var[...] = 1.0 + 0.5 * r
      bn.scale[...] = 1.0 + 0.3 * r
      bn.bias[...] = 0.2 - 0.15 * r
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  return model, x


_FORWARD = {}


def run(model, x):
  """The model's inference output through one jitted function per graph (eager NNX
  calls would compile every op of the ResNet)."""
  graphdef, state = nnx.split(model)
  if graphdef not in _FORWARD:
    _FORWARD[graphdef] = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, train=False))
  return _FORWARD[graphdef](state, x)


def _named(model, filt=nnx.Variable):
  return {ptq.path_name(p): np.asarray(v[...])
          for p, v in nnx.to_flat_state(nnx.state(model, filt))}


def test_parameter_groups_of_resnet18(tiny):
  model, _ = tiny
  groups = ptq.parameter_groups(model)
  by_group = {}
  for path, g in groups.items():
    by_group.setdefault(g, []).append(ptq.path_name(path))
  # stem + 16 block convs + 3 downsampling 1x1 convs; one classifier with its bias
  assert len(by_group["conv"]) == 20
  assert by_group["dense"] == ["classifier/kernel"]
  assert by_group["bias"] == ["classifier/bias"]
  n_bn = len(by_group["batch_norm"]) // 2
  assert len(by_group["batch_stats"]) == 2 * n_bn and n_bn == 1 + 16 + 3 + 1
  assert "stem_conv/kernel" in by_group["conv"]


@pytest.mark.parametrize("granularity", ptq.GRANULARITIES)
def test_quantized_model_runs_and_keeps_the_rest(tiny, granularity):
  model, x = tiny
  before = _named(model)
  y = run(model, x)
  qmodel, quantized = ptq.quantize_model(model, scheme="symmetric", bits=8,
                                         granularity=granularity)
  # the original is untouched
  for k, v in _named(model).items():
    np.testing.assert_array_equal(v, before[k])
  yq = run(qmodel, x)
  assert yq.shape == y.shape and bool(jnp.all(jnp.isfinite(yq)))
  np.testing.assert_allclose(yq, y, atol=0.05 * float(jnp.max(jnp.abs(y))))
  after = _named(qmodel)
  groups = {ptq.path_name(p): g for p, g in ptq.parameter_groups(model).items()}
  assert set(quantized) == {k for k, g in groups.items() if g in ptq.DEFAULT_GROUPS}
  for name, v in after.items():
    if name in quantized:
      np.testing.assert_array_equal(v, quantized[name].values)
      assert quantized[name].num_scales == (
          v.shape[-1] if granularity == "per_channel" and v.ndim >= 2 else 1)
    else:  # batch statistics (and anything else) are kept
      np.testing.assert_array_equal(v, before[name])


def test_groups_are_selectable(tiny):
  model, x = tiny
  before = _named(model)
  groups = {ptq.path_name(p): g for p, g in ptq.parameter_groups(model).items()}
  for include in (("conv",), ("dense", "bias"), ("batch_norm",), ("batch_stats",)):
    qmodel, quantized = ptq.quantize_model(model, scheme="asymmetric", bits=2,
                                           include=include)
    assert set(quantized) == {k for k, g in groups.items() if g in include}
    after = _named(qmodel)
    for name in before:
      changed = not np.array_equal(after[name], before[name])
      if name not in quantized:
        assert not changed, (include, name)
    assert any(not np.array_equal(after[n], before[n]) for n in quantized), include
    assert bool(jnp.all(jnp.isfinite(run(qmodel, x))))


def test_one_jitted_function_serves_every_quantized_state(tiny):
  model, x = tiny
  graphdef, state = nnx.split(model)
  groups = ptq.parameter_groups(model)

  @jax.jit
  def forward(state, x):
    return nnx.merge(graphdef, state)(x, train=False)

  outs = [forward(state, x)]
  for scheme in ptq.SCHEMES:
    for granularity in ptq.GRANULARITIES:
      new_state, _ = ptq.quantize_params(state, groups, scheme=scheme, bits=3,
                                         granularity=granularity)
      outs.append(forward(new_state, x))
  assert forward._cache_size() == 1
  assert all(o.shape == outs[0].shape for o in outs)


def test_errors_name_the_argument(tiny):
  model, _ = tiny
  with pytest.raises(ValueError, match="granularity='per_row'"):
    ptq.quantize_model(model, scheme="symmetric", bits=4, granularity="per_row")
  with pytest.raises(ValueError, match=r"groups=.*'kernels'"):
    ptq.quantize_model(model, scheme="symmetric", bits=4, include=("kernels",))
  with pytest.raises(ValueError, match="bits=1"):
    ptq.quantize_model(model, scheme="symmetric", bits=1)
  with pytest.raises(ValueError, match="scheme="):
    ptq.quantize_model(model, scheme="uniform", bits=4)


def test_float_tensors_lists_what_is_not_quantized(tiny):
  model, _ = tiny
  _, state = nnx.split(model)
  _, quantized = ptq.quantize_model(model, scheme="power_of_two", bits=4)
  rest = ptq.float_tensors(state, exclude=quantized)
  assert rest and all(k.endswith(("/mean", "/var")) for k in rest)
  n_all = sum(v.size for v in jax.tree.leaves(nnx.state(model, nnx.Param, nnx.BatchStat)))
  assert sum(q.codes.size for q in quantized.values()) + sum(
      np.size(v) for v in rest.values()) == n_all
