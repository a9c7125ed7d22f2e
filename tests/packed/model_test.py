"""Packed inference: a trained tiny ResNet-18 packed, saved, loaded and run by the
kernels predicts what the training model predicts; binarized layers are ≥ 31×
smaller than float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnjax import packed
from bnnjax.models import get_model
from bnnjax.nn import method_spec
from bnnjax.train import trainer
from configs import common


def _randomise_batch_norms(model, seed=0):
  """Batch statistics and affine parameters far from their init (negative γ too)."""
  rng = np.random.default_rng(seed)
  for _, m in nnx.iter_graph(model):
    if isinstance(m, nnx.BatchNorm):
      c = m.mean[...].shape
      m.mean[...] = jnp.asarray(rng.standard_normal(c) * 0.3, jnp.float32)
      m.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, c), jnp.float32)
      m.scale[...] = jnp.asarray(rng.standard_normal(c), jnp.float32)
      m.bias[...] = jnp.asarray(rng.standard_normal(c) * 0.3, jnp.float32)


def _check_same(model, pm, x):
  y_model = np.asarray(model(x, train=False))
  y_packed = np.asarray(pm(x))
  np.testing.assert_array_equal(y_packed.argmax(-1), y_model.argmax(-1))
  np.testing.assert_allclose(y_packed, y_model, rtol=1e-5, atol=1e-5)


def test_trained_resnet18_packed_predicts_like_the_training_model(tmp_path):
  c = common.base_config()
  c.update(model_name="resnet18", method="xnor", model_kwargs={"width": 8},
           dataset="mnist", batch_size=8, eval_batch_size=16, num_train_steps=1,
           log_every_steps=1, checkpoint_every_steps=1, progress=False,
           num_train_examples=16, num_test_examples=16)
  trainer.train_and_evaluate(c, str(tmp_path / "run"))
  model, _, _ = trainer.load_trained(str(tmp_path / "run"))
  path = packed.save(packed.pack_model(model), str(tmp_path / "resnet18_packed"))
  pm = packed.load(path)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((16, 28, 28, 1)), jnp.float32)
  _check_same(model, pm, x)
  sizes = pm.layer_sizes()
  binary = {k: v for k, v in sizes.items() if v["kind"] == "xnor"}
  assert len(binary) == 16
  for name, s in binary.items():
    assert s["float32_kernel"] >= 31 * s["kernel_bits"], (name, s)


@pytest.mark.parametrize("method", ["xnor_cf_2", "xnorpp_3", "bwn"])
def test_other_methods_and_negative_gammas(method):
  model = get_model("resnet18", num_classes=5, input_shape=(12, 12, 3),
                    spec=method_spec(method, pad_value=1.0 if method == "xnor_cf_2" else 0.0),
                    rngs=nnx.Rngs(1), width=4)
  _randomise_batch_norms(model)
  x = jnp.asarray(np.random.default_rng(2).standard_normal((4, 12, 12, 3)), jnp.float32)
  _check_same(model, packed.pack_model(model), x)


def test_sign_threshold_matches_sign_of_batch_norm_exactly():
  bn = nnx.BatchNorm(4, rngs=nnx.Rngs(0))
  bn.mean[...] = jnp.array([0.3, -1.0, 0.0, 2.0])
  bn.var[...] = jnp.array([0.5, 2.0, 1.0, 1.0])
  bn.scale[...] = jnp.array([1.5, -0.7, 0.0, 1.0])
  bn.bias[...] = jnp.array([0.2, 0.1, -0.5, 0.0])
  sigma, tau = packed.sign_threshold(bn)
  np.testing.assert_array_equal(sigma, [1, -1, 1, 1])
  assert tau[2] == np.inf  # γ = 0, β < 0: never +1
  x = np.concatenate([np.random.default_rng(0).standard_normal((1000, 4)) * 3,
                      np.broadcast_to(tau, (1, 4)),
                      np.nextafter(tau, -np.inf)[None]]).astype(np.float32)
  x = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
  expected = np.asarray(bn(jnp.asarray(x), use_running_average=True)) >= 0
  np.testing.assert_array_equal(x * sigma >= tau, expected)


@pytest.mark.parametrize("method,min_ratio", [("xnorpp_1", 31.0)])
def test_imagenet_resnet18_binarized_layers_are_about_32x_smaller(method, min_ratio):
  """Kernel bits are 32× smaller than float32; with the per-channel float32 scale, BN
  threshold (and XNOR's K affine map) a layer is ≥ 31× smaller for XNOR-Net++ and
  ≈ 30.6× for XNOR (K costs 8 more bytes per input channel)."""
  model = get_model("resnet18", num_classes=1000, input_shape=(224, 224, 3),
                    spec=method_spec(method), rngs=nnx.Rngs(0))
  sizes = packed.pack_model(model).layer_sizes()
  binary = [s for s in sizes.values() if s["kind"] == "xnor"]
  f32 = sum(s["float32_kernel"] for s in binary)
  assert f32 == 32 * sum(s["kernel_bits"] for s in binary)
  stored = sum(s["packed"] for s in binary)  # bits + scales + BN thresholds
  assert f32 >= min_ratio * stored, (f32, stored)


def test_sign_stream_roundtrip_and_errors(tmp_path):
  w = np.random.default_rng(0).standard_normal((3, 3, 5, 7))
  words = packed.pack_sign_stream(w)
  assert words.dtype == np.uint32 and words.size == -(-w.size // 32)
  np.testing.assert_array_equal(packed.unpack_sign_stream(words, w.shape), w >= 0)
  with pytest.raises(TypeError, match="ResNet18"):
    packed.pack_model(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
  np.savez(tmp_path / "x.npz", a=np.zeros(2))
  with pytest.raises(ValueError, match="not a packed model"):
    packed.load(str(tmp_path / "x.npz"))
