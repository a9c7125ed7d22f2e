"""The precision of every conv and matmul a layer computes is explicit
(``bnnjax.nn.layers.matmul_precision``): ``DEFAULT`` for ±1 × ±1 products (exact at
any precision), ``HIGHEST`` for everything with a float operand, in the eval-mode
layers, on every float-conv lowering, and in the packed layers. XLA:CPU ignores the
setting, so these tests read it from the traced programs; on a GPU it decides
whether float32 runs as TF32 (issue 16)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from bnnjax import nn
from bnnjax import packed
from bnnjax.kernels import float_conv
from bnnjax.nn import layers

MATMULS = ("dot_general", "conv_general_dilated")


# XNOR-Net's A = mean_c |x| (bnnjax.quant.scales.mean_abs_over_channels) is a product
# with a column of ones, not one of the layer's products: precisions() leaves it out,
# test_the_activation_mean_is_highest checks it.
NOT_LAYER_PRODUCTS = ("mean_abs_over_channels",)


def precisions(fn, *args, skip=NOT_LAYER_PRODUCTS) -> list:
  """The ``precision`` of every dot_general / conv of ``fn``'s jaxpr, sub-jaxprs
  included except the named calls ``skip`` (``None`` where it was left to the
  default)."""
  found = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.params.get("name") in skip:
        continue
      if eqn.primitive.name in MATMULS:
        p = eqn.params.get("precision")
        found.append(None if p is None else tuple(lax.Precision(q) for q in p)
                     if isinstance(p, tuple) else (lax.Precision(p),) * 2)
      for value in eqn.params.values():
        for sub in value if isinstance(value, (tuple, list)) else (value,):
          if hasattr(sub, "eqns"):
            walk(sub)
          elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
            walk(sub.jaxpr)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


HIGHEST = (lax.Precision.HIGHEST,) * 2
DEFAULT = (lax.Precision.DEFAULT,) * 2


@pytest.mark.parametrize("method, expected", [
    ("fp", HIGHEST), ("bwn", HIGHEST), ("bw_cf_2", HIGHEST), ("xnor", DEFAULT),
    ("xnorpp_1", DEFAULT), ("bonn", DEFAULT)])
@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_layer_precision(method, expected, kind):
  spec = nn.method_spec(method, compute="float")
  assert layers.matmul_precision(spec) == expected[0]
  if kind == "conv":
    layer = nn.QuantConv(4, 8, 3, spec=spec, input_size=(6, 6), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 4))
  else:
    layer = nn.QuantDense(4, 8, spec=spec, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 4))
  found = precisions(lambda v: layer(v), x)
  assert found and all(p == expected for p in found), found


def test_the_activation_mean_is_highest():
  """K's channel mean has a float operand: HIGHEST, forward and gradient."""
  layer = nn.QuantConv(4, 8, 3, spec=nn.method_spec("xnor", compute="float"),
                       input_size=(6, 6), rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 4))
  everything = precisions(lambda v: layer(v), x, skip=())
  assert everything.count(HIGHEST) == 1 and len(everything) == 2, everything
  grad = jax.grad(lambda v: jnp.sum(layer(v) ** 2))
  assert HIGHEST in precisions(grad, x, skip=())


def test_multi_bit_quantizer_is_highest():
  spec = nn.QuantSpec(input_quantizer="dorefa", kernel_quantizer="ste_sign")
  assert layers.matmul_precision(spec) == lax.Precision.HIGHEST


@pytest.mark.parametrize("lowering", float_conv.LOWERINGS)
def test_every_lowering_takes_the_precision(lowering):
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 4))
  w = jax.random.normal(jax.random.key(2), (3, 3, 4, 5))
  conv = lambda a, b: float_conv.conv2d(a, b, padding="SAME", pad_value=1.0,
                                        lowering=lowering, precision="highest")
  assert set(precisions(conv, x, w)) == {HIGHEST}
  # and the gradients (xla_taps differentiates through the taps lowering)
  grad = jax.grad(lambda a, b: jnp.sum(conv(a, b) ** 2), argnums=(0, 1))
  assert set(precisions(grad, x, w)) == {HIGHEST}


def test_packed_layers_match_the_eval_layers_precision():
  """The packed model computes its float layers (BWN's float input, full precision)
  at the precision the eval-mode layers use."""
  for method in ("bwn", "fp"):
    spec = nn.method_spec(method)
    conv = nn.QuantConv(4, 8, 3, spec=spec, input_size=(6, 6), rngs=nnx.Rngs(0))
    dense = nn.QuantDense(4, 8, spec=spec, rngs=nnx.Rngs(0))
    if spec.binary_kernel:
      conv, dense = packed.PackedConv(conv), packed.PackedDense(dense)
    x4 = jax.random.normal(jax.random.key(0), (2, 6, 6, 4))
    found = (precisions(lambda v: conv(v), x4)
             + precisions(lambda v: dense(v), x4[:, 0, 0]))
    assert found and set(found) == {HIGHEST}, (method, found)


@pytest.mark.parametrize("lowering", float_conv.LOWERINGS)
def test_every_lowering_accumulates_bfloat16_operands_in_float32(lowering):
  """±1 operands in bfloat16 with a float32 result give the exact integer sums, the
  +1 border's tap sums over 301 channels included: an all-+1 filter sums to 301,
  which bfloat16 (integers exact to 256) cannot hold."""
  k1, k2 = jax.random.split(jax.random.key(3))
  x = jnp.where(jax.random.normal(k1, (2, 5, 5, 301)) >= 0, 1.0, -1.0)
  w = jnp.where(jax.random.normal(k2, (3, 3, 301, 4)) >= 0, 1.0, -1.0)
  w = w.at[..., 0].set(1.0)
  ref = lax.conv_general_dilated(
      jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=1.0), w, (1, 1),
      "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest")
  y = float_conv.conv2d(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), padding="SAME",
                        pad_value=1.0, lowering=lowering,
                        preferred_element_type=jnp.float32)
  assert y.dtype == jnp.float32
  np.testing.assert_array_equal(y, ref)


def test_a_model_exported_for_cuda_states_its_precisions():
  """``jax.export`` for cuda (no GPU needed): in the eval-mode binary ResNet-18 every
  float32 conv/matmul carries HIGHEST and every ±1 one has bfloat16 operands and a
  float32 result (``binary_compute_dtype="bfloat16"``, TPU's ``auto``)."""
  import re

  from jax import export

  from bnnjax import models
  spec = nn.method_spec("xnor", compute="float", compute_dtype="bfloat16")
  model = models.get_model("resnet18", num_classes=5, input_shape=(16, 16, 3),
                           spec=spec, rngs=nnx.Rngs(0), width=8)
  model.eval()
  graphdef, state = nnx.split(model)
  f = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
  exported = export.export(f, platforms=["cuda"])(
      state, jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32))
  ops = [line for line in exported.mlir_module().splitlines()
         if re.search(r"stablehlo\.(convolution|dot_general)", line)]
  kinds = {"f32 highest": 0, "bf16 to f32": 0}
  for line in ops:
    operands = re.search(r": \((tensor<[^)]*)\) -> tensor<[0-9x]*x(\w+)>", line)
    assert operands, line
    dtypes = set(re.findall(r"x(f32|bf16)>", operands.group(1)))
    if dtypes == {"f32"}:
      # convolution: precision_config = [#stablehlo<precision HIGHEST>, ...];
      # dot_general: precision = [HIGHEST, HIGHEST]
      assert len(re.findall(r"\bHIGHEST\b", line)) == 2, line
      kinds["f32 highest"] += 1
    else:
      assert dtypes == {"bf16"} and operands.group(2) == "f32", line
      kinds["bf16 to f32"] += 1
  # the stem, the downsampling shortcuts and the classifier; the 16 binary convs
  assert kinds["f32 highest"] >= 2 and kinds["bf16 to f32"] >= 15, kinds


def test_float_precision_block_sets_the_float_layers_only():
  fp, xnor = nn.method_spec("fp"), nn.method_spec("xnor")
  with layers.float_precision("default"):
    assert layers.matmul_precision(fp) == lax.Precision.DEFAULT
    assert layers.matmul_precision(xnor) == lax.Precision.DEFAULT
    with layers.float_precision(lax.Precision.HIGHEST):
      assert layers.matmul_precision(fp) == lax.Precision.HIGHEST
    assert layers.matmul_precision(fp) == lax.Precision.DEFAULT
  with pytest.raises(RuntimeError), layers.float_precision("default"):
    raise RuntimeError
  assert layers.matmul_precision(fp) == lax.Precision.HIGHEST
  assert layers.train_float_precision("auto") == lax.Precision.DEFAULT
  assert layers.train_float_precision("highest") == lax.Precision.HIGHEST
  with pytest.raises(ValueError, match="train_float_precision='tf32'; allowed"):
    layers.train_float_precision("tf32")


@pytest.mark.parametrize("choice", ["auto", "highest"])
def test_the_train_step_takes_train_float_precision(choice):
  """The trainer's train step traces the float layers (here a full-precision
  ResNet-18: every conv and the classifier) at ``config.train_float_precision``; the
  eval step keeps HIGHEST."""
  import optax

  from bnnjax import models
  from bnnjax.train import parallel, trainer
  model = models.get_model("resnet18", num_classes=3, input_shape=(8, 8, 3),
                           spec=nn.method_spec("fp"), rngs=nnx.Rngs(0), width=4)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.sgd(0.1)
  mesh = parallel.make_mesh()
  step = trainer.make_train_step(graphdef, tx, [], {"default": optax.constant_schedule(0.1)},
                                 [False] * len(jax.tree.leaves(params)), None, mesh,
                                 float_precision=layers.train_float_precision(choice))
  state = trainer.TrainState(jnp.zeros((), jnp.int32), params, rest, tx.init(params))
  batch = {"image": jnp.ones((2, 8, 8, 3)), "label": jnp.array([0, 1])}
  expected = DEFAULT if choice == "auto" else HIGHEST
  found = precisions(step, state, batch)
  assert found and set(found) == {expected}
  evaluated = precisions(lambda x: nnx.merge(graphdef, params, rest)(x), batch["image"])
  assert evaluated and set(evaluated) == {HIGHEST}
