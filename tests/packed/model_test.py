"""Packed export of every zoo model × every method: the packed model (binary layers as
1-bit words, run by the XNOR kernels) computes the eval-mode model's logits exactly,
saves, loads, and its binarized kernels are 32× smaller than float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnjax import models
from bnnjax import nn
from bnnjax import packed

TINY = {  # input shape and model kwargs of a tiny version of each model
    "resnet18": ((12, 12, 3), {"width": 4}),
    "wrn22": ((8, 8, 3), {"widths": (4, 4, 8, 8)}),
    "nin": ((16, 16, 3), {"width_mult": 0.0625}),
    "vgg7": ((16, 20, 3), {"width_mult": 0.0625}),
    "alexnet": ((32, 32, 3), {"width_mult": 0.0625}),
}
METHODS = ["xnor", "xnor_cf_2", "xnorpp_1", "xnorpp_2", "xnorpp_3", "xnorpp_4", "bonn",
           "bwn", "bw_cf_2", "fp"]


def _randomise(model, seed=0):
  """Batch statistics, affine parameters and scales far from their init (negative γ
  and negative scales too), so a wrong fold or sign would show."""
  rng = np.random.default_rng(seed)
  for _, m in nnx.iter_graph(model):
    if isinstance(m, nnx.BatchNorm):
      c = m.mean[...].shape
      m.mean[...] = jnp.asarray(rng.standard_normal(c) * 0.3, jnp.float32)
      m.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, c), jnp.float32)
      m.scale[...] = jnp.asarray(rng.standard_normal(c), jnp.float32)
      m.bias[...] = jnp.asarray(rng.standard_normal(c) * 0.3, jnp.float32)
    if isinstance(m, (nn.QuantConv, nn.QuantDense)):
      for name in ("gamma_alpha", "gamma_beta", "gamma_gamma", "bonn_modulation"):
        if hasattr(m, name):
          v = getattr(m, name)
          v[...] = jnp.asarray(v[...] * rng.uniform(0.5, 1.5, v[...].shape), jnp.float32)


# Every method on one of the two models BONN and XNOR-Net++ use (Bi-Real ResNet-18,
# WRN-22), XNOR on both, and on the cross-filter paper's plain CNNs one method per kind
# of packed layer (XNOR input and scale, Γ with spatial factors, binary weights with
# float input), which keeps the suite inside CI's budget. All 48 combinations were
# checked bit for bit eagerly when the swap was written.
PAIRS = ([("resnet18", m) for m in ("xnor", "xnor_cf_2", "xnorpp_2", "xnorpp_4",
                                    "bonn", "bwn")]
         + [("wrn22", m) for m in ("xnor", "xnorpp_3", "bw_cf_2", "fp")]
         + [(m, method) for m in ("nin", "vgg7", "alexnet")
            for method in ("xnor", "xnorpp_4", "bw_cf_2")])
# Γ case 1 (one learned scalar per filter) packs in tests/packed/reactnet_packed_test.py
# (ResNet-18 with RSign/RPReLU); BONN on WRN packs as its XNOR layers plus the
# modulation, which ResNet-18's ``bonn`` covers.
ELSEWHERE = {"xnorpp_1"}
assert {method for _, method in PAIRS} | ELSEWHERE == set(METHODS)


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_model_and_method_packs_to_the_same_logits(name, tmp_path):
  shape, kwargs = TINY[name]
  x = jnp.asarray(np.random.default_rng(1).standard_normal((3, *shape)), jnp.float32)
  for method in [method for m, method in PAIRS if m == name]:
    pad_value = 1.0 if method in ("xnor_cf_2", "xnorpp_2") else 0.0
    if name == "nin" and "cf" in method:  # NIN's tiny widths are odd: n = 1
      method = method.replace("_2", "_1")
    model = models.get_model(name, num_classes=6, input_shape=shape,
                             spec=nn.method_spec(method, pad_value=pad_value),
                             rngs=nnx.Rngs(params=0, dropout=1), **kwargs)
    _randomise(model)
    pm = packed.pack_model(model)
    assert (len(packed.packed_layers(pm)) == 0) == (method == "fp"), method
    assert not packed.packed_layers(model)  # the original model is untouched
    # The ±1 products are integers either way and the rest is the same float
    # arithmetic; under jit the training model computes its scales (mean|W|, Γ) inside
    # a fused program, which may round their last bit differently from the scale
    # folded once at packing (the eager comparison below is bit for bit).
    got = np.asarray(packed.inference_fn(pm)(x))
    want = np.asarray(packed.inference_fn(model)(x))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=method)
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1), err_msg=method)
    loaded = packed.load(packed.save(pm, str(tmp_path / f"{name}_{method}")))
    a, b = nnx.state(loaded, nnx.Not(nnx.RngState)), nnx.state(pm, nnx.Not(nnx.RngState))
    assert jax.tree.structure(a) == jax.tree.structure(b), method
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("method", ["xnor"])
def test_eager_packed_model_is_bit_identical(method):
  shape, kwargs = TINY["resnet18"]
  model = models.get_model("resnet18", num_classes=6, input_shape=shape,
                           spec=nn.method_spec(method), rngs=nnx.Rngs(0), **kwargs)
  _randomise(model)
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, *shape)), jnp.float32)
  np.testing.assert_array_equal(np.asarray(packed.pack_model(model)(x)),
                                np.asarray(model(x)))


def test_inference_fn_with_arrays_as_constants_or_as_an_argument():
  # A packed model compiles its arrays in as constants by default (XLA folds the
  # weight-only parts once); both ways compute the same function, and the function
  # keeps the arrays it was made with.
  shape, kwargs = TINY["resnet18"]
  model = models.get_model("resnet18", num_classes=6, input_shape=shape,
                           spec=nn.method_spec("xnor"), rngs=nnx.Rngs(0), **kwargs)
  _randomise(model)
  pm = packed.pack_model(model)
  x = jnp.asarray(np.random.default_rng(1).standard_normal((3, *shape)), jnp.float32)
  eager = np.asarray(pm(x))
  baked = packed.inference_fn(pm)
  for fn in (baked, packed.inference_fn(pm, constants=False),
             packed.inference_fn(model, constants=True)):
    np.testing.assert_allclose(np.asarray(fn(x)), eager, rtol=1e-5, atol=1e-6)
  before = np.asarray(baked(x))
  _randomise(pm, seed=3)
  np.testing.assert_array_equal(np.asarray(baked(x)), before)
  assert not np.allclose(np.asarray(packed.inference_fn(pm)(x)), before)


def test_binarized_kernels_are_32x_smaller_on_disk(tmp_path):
  model = models.get_model("resnet18", num_classes=10, input_shape=(28, 28, 1),
                           spec=nn.method_spec("xnor"), rngs=nnx.Rngs(0), width=32)
  pm = packed.pack_model(model)
  bits = sum(-(-int(np.prod(l.kernel_shape)) // 32) * 4 for _, l in packed.packed_layers(pm))
  f32 = sum(4 * int(np.prod(l.kernel_shape)) for _, l in packed.packed_layers(pm))
  assert f32 == 32 * bits
  path = packed.save(pm, str(tmp_path / "r18"))
  total = packed.float32_nbytes(model)
  assert packed.nbytes(pm) < total / 10  # binary kernels are ~97% of the parameters
  import os
  assert os.path.getsize(path) < 1.1 * packed.nbytes(pm) + 20000


def test_sign_stream_roundtrip_and_errors(tmp_path):
  w = np.random.default_rng(0).standard_normal((3, 3, 5, 7))
  words = packed.pack_sign_stream(w)
  assert words.dtype == np.uint32 and words.size == -(-w.size // 32)
  np.testing.assert_array_equal(packed.unpack_sign_stream(words, w.shape), w >= 0)
  with pytest.raises(TypeError, match="no QuantConv"):
    packed.pack_model(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
  np.savez(tmp_path / "x.npz", a=np.zeros(2))
  with pytest.raises(ValueError, match="not a packed model.*no __meta__"):
    packed.load(str(tmp_path / "x.npz"))
  (tmp_path / "random.npz").write_bytes(np.random.default_rng(0).bytes(1000))
  with pytest.raises(ValueError, match="not a packed model.*not an .npz") as e:
    packed.load(str(tmp_path / "random.npz"))
  assert "pickle" not in str(e.value)  # numpy's advice to unpickle a stranger's file
  (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04" + b"\0" * 40)  # a truncated zip
  with pytest.raises(ValueError, match="not a packed model.*not an .npz"):
    packed.load(str(tmp_path / "cut.npz"))
  with pytest.raises(ValueError, match="not a packed model.*cannot be read"):
    packed.load(str(tmp_path / "missing.npz"))
  model = models.get_model("resnet18", num_classes=2, input_shape=(8, 8, 1),
                           spec=nn.method_spec("xnor"), rngs=nnx.Rngs(0), width=4)
  with pytest.raises(ValueError, match="pack_model first"):
    packed.save(model, str(tmp_path / "m"))
  path = packed.save(packed.pack_model(model), str(tmp_path / "m"))
  with pytest.raises(FileExistsError, match="exists"):
    packed.save(packed.pack_model(model), str(tmp_path / "m"))
  direct = models.ResNet18(num_classes=2, input_shape=(8, 8, 1), spec=nn.FP,
                           rngs=nnx.Rngs(0), width=4)
  with pytest.raises(ValueError, match="build_args"):
    packed.save(packed.pack_model(direct), str(tmp_path / "d"))
  assert path.endswith(".npz")
