"""The binary compute backends (config.binary_compute): packed and float give the same
forward values, gradients, loss curve and test accuracy."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bnnjax import models
from bnnjax import nn
from bnnjax.train import trainer
from configs import common


def _model(method, compute, compute_dtype="auto", **kw):
  spec = nn.method_spec(method, compute=compute, compute_dtype=compute_dtype, **kw)
  return models.get_model("resnet18", num_classes=5, input_shape=(12, 12, 3), spec=spec,
                          rngs=nnx.Rngs(0), width=8)


# Plain ``xnor`` is BONN's path without the modulation (``bonn`` here, zero padding)
# and is trained on both backends below; the four kinds of packed layer are covered.
# Both ±1 product dtypes: bfloat16 is the default on a GPU.
@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("method,pad_value", [("xnorpp_3", 1.0), ("bonn", 0.0),
                                              ("xnor_cf_2", 1.0)])
def test_packed_and_float_agree_in_a_training_step(method, pad_value, compute_dtype):
  """Same forward, same gradients: the packed path's backward is the vjp of the float
  product in the layer's compute dtype (``binary_conv_ste(compute_dtype=)``).

  The ±1 products are the same integers on both paths, but XLA fuses the float ops
  around them (K, the scale, batch norm) differently in the two programs, so the
  logits agree to a few ulps, not bit for bit (bit for bit on CPU under this suite's
  XLA flags; ``xnor_cf_2`` differs by 1.3e-7 without them). In bfloat16 the gradients
  agree to its rounding: XLA may keep or drop a bfloat16 rounding of the cotangent
  differently in the two programs (measured: under 1e-3 relative; without the
  compute dtype in the packed backward, the whole bfloat16 rounding).
  """
  x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 12, 12, 3)), jnp.float32)
  y = jnp.asarray([0, 1, 2, 3])
  out = {}
  for compute in ("float", "packed"):
    model = _model(method, compute, compute_dtype, pad_value=pad_value)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, rest):
      m = nnx.merge(graphdef, params, jax.tree.map(lambda a: a, rest))
      logits = m(x, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    def step(params, rest):  # one program per backend: training step and eval forward
      (l, logits), grads = jax.value_and_grad(loss, has_aux=True)(params, rest)
      return l, logits, grads, nnx.merge(graphdef, params, rest)(x)
    out[compute] = jax.jit(step)(params, rest)
  (lf, yf, gf, ef), (lp, yp, gp, ep) = out["float"], out["packed"]
  np.testing.assert_allclose(yp, yf, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(ep, ef, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(float(lp), float(lf), rtol=1e-6)
  rtol, atol = (1e-5, 1e-6) if compute_dtype == "float32" else (1e-2, 1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol), gp, gf)


def test_packed_path_is_used():
  """The packed layer runs the XNOR-popcount kernel (its jaxpr has population_count)."""
  x = jnp.ones((1, 12, 12, 3))
  for compute, expected in (("packed", True), ("float", False)):
    model = _model("xnor", compute)
    jaxpr = str(jax.make_jaxpr(lambda x: model(x))(x))
    assert ("population_count" in jaxpr) is expected, compute


def test_auto_is_the_measured_choice_and_bad_values_are_refused():
  assert nn.method_spec("xnor").compute == "auto"
  assert nn.method_spec("fp").compute == "auto"  # FP layers ignore it
  with pytest.raises(ValueError, match="compute='fast'.*allowed"):
    nn.QuantSpec(kernel_quantizer="ste_sign", compute="fast")
  c = common.base_config()
  c.binary_compute = "fast"
  with pytest.raises(ValueError, match="binary_compute"):
    trainer.quant_spec(c)


def test_trainer_loss_curve_and_accuracy_equal_for_both_backends(tmp_path):
  results, losses = {}, {}
  for compute in ("float", "packed"):
    c = common.base_config()
    c.update(model_name="resnet18", method="xnor", model_kwargs={"width": 4},
             dataset="mnist", batch_size=8, eval_batch_size=16, num_train_steps=3,
             log_every_steps=1, checkpoint_every_steps=3, progress=False,
             num_train_examples=32, num_test_examples=32, binary_compute=compute)
    workdir = tmp_path / compute
    results[compute] = trainer.train_and_evaluate(c, str(workdir))
    losses[compute] = [json.loads(l)["loss/total"] for l in open(workdir / "metrics.jsonl")
                       if "loss/total" in l]
  np.testing.assert_allclose(losses["packed"], losses["float"], rtol=1e-5)
  assert results["packed"]["test/top1"] == results["float"]["test/top1"]


def _eval_batch(n=6, size=12, channels=3, classes=5):
  rng = np.random.default_rng(1)
  return {"image": jnp.asarray(rng.standard_normal((n, size, size, channels)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, classes, n), jnp.int32),
          "mask": jnp.asarray([1, 1, 1, 1, 1, 0], jnp.float32)}


@pytest.mark.parametrize("method", ["xnor", "bonn", "xnorpp_2", "bwn"])
def test_packed_eval_step_equals_the_float_eval_step(method):
  """The trainer's eval step on the packed model (kernels packed once by ``prepare``)
  counts the same top-1/top-5 and the same loss as on the eval-mode model."""
  from bnnjax.train import parallel
  model = _model(method, "float")
  # Batch statistics away from their initial values, as after training.
  model(_eval_batch()["image"], train=True)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  state = trainer.TrainState(jnp.int32(0), params, rest, None)
  mesh = parallel.make_mesh()
  batch = _eval_batch()
  out = {}
  for packed in (False, True):
    step = trainer.make_eval_step(graphdef, mesh, packed=packed, params=params, rest=rest)
    assert step.packed is packed
    prepared = step.prepare(state)
    if packed:  # the kernels were packed into uint32 words
      assert any(a.dtype == jnp.uint32 for a in jax.tree.leaves(prepared))
    out[packed] = {k: float(v) for k, v in step(prepared, batch).items()}
  assert out[True]["count"] == out[False]["count"] == 5.0
  assert out[True]["top1"] == out[False]["top1"]
  assert out[True]["top5"] == out[False]["top5"]
  np.testing.assert_allclose(out[True]["loss"], out[False]["loss"], rtol=1e-6)


def test_which_eval_model_the_config_picks():
  c = common.base_config()
  assert c.binary_compute == "auto"
  assert trainer.eval_model_is_packed(c, "cpu")
  assert not trainer.eval_model_is_packed(c, "gpu")
  assert not trainer.eval_model_is_packed(c, "tpu")
  for compute, expected in (("float", False), ("packed", True)):
    c.binary_compute = compute
    assert trainer.eval_model_is_packed(c, "gpu") is expected
    assert trainer.eval_model_is_packed(c, "cpu") is expected


def test_a_model_with_nothing_to_pack_is_evaluated_unpacked():
  from bnnjax.train import parallel
  for model in (_model("fp", "auto"),
                models.get_model("resnet18", num_classes=5, input_shape=(12, 12, 3),
                                 spec=nn.QuantSpec(input_quantizer="ste_sign",
                                                   kernel_quantizer="ste_tern"),
                                 rngs=nnx.Rngs(0), width=8)):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    step = trainer.make_eval_step(graphdef, parallel.make_mesh(), packed=True,
                                  params=params, rest=rest)
    assert not step.packed
    state = trainer.TrainState(jnp.int32(0), params, rest, None)
    assert float(step(step.prepare(state), _eval_batch())["count"]) == 5.0


def test_auto_trains_every_conv_packed_on_cpu():
  """compute="auto": the packed forward where it was measured faster (every binary
  conv on CPU, down to 1×1 maps), the float one for dense layers and on GPU/TPU."""
  conv = nn.QuantConv(64, 64, 3, spec=nn.method_spec("xnor"), rngs=nnx.Rngs(0))
  for size in (7, 4, 2, 1):
    assert nn.layers.packed_is_faster((size, size), "cpu"), size
  assert not nn.layers.packed_is_faster((7, 7), "gpu")
  assert not nn.layers.packed_is_faster(None, "cpu")  # dense layers
  dense = nn.QuantDense(64, 8, spec=nn.method_spec("xnor"), rngs=nnx.Rngs(0))
  if jax.default_backend() == "cpu":  # the layers themselves follow the rule
    for size in (7, 2, 1):
      jaxpr = str(jax.make_jaxpr(lambda x: conv(x))(jnp.ones((1, size, size, 64))))
      assert "population_count" in jaxpr, size
    jaxpr = str(jax.make_jaxpr(lambda x: dense(x))(jnp.ones((2, 64))))
    assert "population_count" not in jaxpr
