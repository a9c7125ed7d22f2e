"""binary_conv equals lax.conv_general_dilated on ±1 data exactly
(docs/packed.md#binary-convolution), for both pad values, strides 1 and 2, SAME and
VALID; one shared class per implementation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnjax.kernels import binary_conv
from bnnjax.kernels import binary_conv_reference
from bnnjax.kernels import binary_conv_ste
from bnnjax.kernels import binary_dense
from bnnjax.kernels import binary_dense_ste
from bnnjax.kernels import float_conv
from bnnjax.kernels import xla
from bnnjax.quant import ste_sign

# (N, H, W, c_in, kh, c_out): odd sizes, c_in below / above one word, even kernel.
GEOMETRIES = [(2, 7, 6, 3, 3, 5), (1, 5, 5, 33, 3, 4), (1, 6, 7, 4, 2, 3)]
CASES = [(pad_value, stride, padding) for pad_value in (0.0, 1.0) for stride in (1, 2)
         for padding in ("SAME", "VALID")]


def _data(n, h, w, c, kh, o, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, h, w, c)).astype(np.float32)
  wt = rng.standard_normal((kh, kh, c, o)).astype(np.float32)
  x[0, 0, 0, 0] = 0.0
  return x, wt


class _BinaryConvTests:
  implementation = None
  interpret = False
  geometries = GEOMETRIES

  def conv(self, x, w, **kw):
    # One jit per case: one compilation instead of many small eager ones.
    f = functools.partial(binary_conv, implementation=self.implementation,
                          interpret=self.interpret, **kw)
    return jax.jit(f)(x, w)

  def test_equals_float_conv_of_signs(self):
    for g in self.geometries:
      x, w = _data(*g)
      for pad_value, stride, padding in CASES:
        kw = dict(strides=stride, padding=padding, pad_value=pad_value)
        out = np.asarray(self.conv(x, w, **kw))
        ref = np.asarray(binary_conv_reference(x, w, **kw))
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, ref, err_msg=str((g, kw)))

  def test_explicit_asymmetric_padding(self):
    x, w = _data(1, 5, 4, 6, 3, 2, seed=1)
    for pad_value in (0.0, 1.0):
      kw = dict(strides=(2, 1), padding=((2, 0), (1, 2)), pad_value=pad_value)
      np.testing.assert_array_equal(self.conv(x, w, **kw),
                                    binary_conv_reference(x, w, **kw))

  def test_small_maps_where_taps_read_only_the_border(self):
    # 1×1 and 2×2 maps (ResNet-18's last stages), a stride stepping over the map and
    # asymmetric pads: the product runs over the live taps' hull only
    # (kernels.conv.live_tap_hull), and must still equal the full conv exactly.
    cases = [((1, 1, 1, 35, 3, 4), 1, ((1, 1), (1, 1))),
             ((2, 2, 2, 6, 3, 3), 2, ((1, 1), (1, 1))),
             ((1, 2, 3, 5, 3, 2), 1, "SAME"),
             ((1, 1, 2, 4, 1, 3), 3, ((2, 0), (0, 1))),  # no tap reaches a pixel
             ((1, 3, 1, 4, 5, 2), (2, 1), ((3, 1), (2, 2)))]
    for g, stride, padding in cases:
      x, w = _data(*g)
      for pad_value in (0.0, 1.0):
        kw = dict(strides=stride, padding=padding, pad_value=pad_value)
        np.testing.assert_array_equal(self.conv(x, w, **kw),
                                      binary_conv_reference(x, w, **kw),
                                      err_msg=str((g, kw)))


def test_live_tap_hull():
  from bnnjax.kernels.conv import live_tap_hull
  pad1 = ((1, 1), (1, 1))
  assert live_tap_hull((3, 3), (1, 1), pad1, (1, 1)) == ((1, 1), (1, 1))
  assert live_tap_hull((3, 3), (2, 2), pad1, (2, 2)) == ((1, 2), (1, 2))
  assert live_tap_hull((3, 3), (1, 1), pad1, (2, 2)) == ((0, 2), (0, 2))
  assert live_tap_hull((3, 3), (1, 1), pad1, (7, 1)) == ((0, 2), (1, 1))
  assert live_tap_hull((1, 1), (3, 3), ((2, 0), (0, 0)), (1, 1)) is None


class TestXla(_BinaryConvTests):
  """Short contractions take the direct tap sum; 200 channels (63 words) and 300
  output channels im2col and the blocked loop or one reduce."""
  implementation = "xla"
  geometries = GEOMETRIES + [(1, 4, 5, 200, 3, 6), (1, 3, 3, 40, 3, 300)]


class TestXlaIm2col(_BinaryConvTests):
  """im2col + the matmul on every geometry (the direct tap sum switched off)."""
  implementation = "xla"

  @pytest.fixture(autouse=True)
  def _no_direct_product(self, monkeypatch):
    monkeypatch.setattr(xla, "UNROLLED_MAX_WORDS", 0)


class TestReference(_BinaryConvTests):
  implementation = "reference"
  geometries = GEOMETRIES[:1]


class TestPallasGpuInterpret(_BinaryConvTests):
  implementation = "pallas_gpu"
  interpret = True
  geometries = GEOMETRIES[1:2]


def test_zero_padding_differs_from_plus_one_padding():
  x, w = _data(*GEOMETRIES[0])
  assert not np.array_equal(binary_conv(x, w, pad_value=0), binary_conv(x, w, pad_value=1))


def test_dense_equals_sign_product():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 3, 70)).astype(np.float32)
  w = rng.standard_normal((70, 5)).astype(np.float32)
  expected = np.einsum("abk,kn->abn", np.where(x >= 0, 1, -1), np.where(w >= 0, 1, -1))
  np.testing.assert_array_equal(binary_dense(x, w), expected)


def test_conv_errors_name_the_argument():
  x, w = _data(*GEOMETRIES[0])
  with pytest.raises(ValueError, match="pad_value=0.5"):
    binary_conv(x, w, pad_value=0.5)
  with pytest.raises(ValueError, match="padding='FULL'"):
    binary_conv(x, w, padding="FULL")
  with pytest.raises(ValueError, match="strides"):
    binary_conv(x, w, strides=0)
  with pytest.raises(ValueError, match="c_in=3"):
    binary_conv(x, w[:, :, :2])
  with pytest.raises(ValueError, match="does not fit"):
    binary_conv(x[:, :2, :2], w, padding="VALID")


# ------------------------------------------------------------------ training wrapper
@pytest.mark.parametrize("pad_value", [0.0, 1.0])
def test_conv_ste_forward_exact_and_gradient_of_reference(pad_value):
  """Forward by the kernel, backward by the float conv, through ste_sign."""
  x, w = _data(2, 6, 5, 3, 3, 4, seed=2)
  kw = dict(strides=2, padding="SAME", pad_value=pad_value)
  probe = jnp.asarray(np.random.default_rng(3).standard_normal((2, 3, 3, 4)), jnp.float32)

  def loss(conv, x, w):
    return jnp.sum(conv(ste_sign(x), ste_sign(w)) * probe)

  kernel_conv = functools.partial(binary_conv_ste, implementation="xla", **kw)
  ref_conv = lambda a, b: binary_conv_reference(a, b, **kw)  # noqa: E731
  (lk, gk) = jax.jit(jax.value_and_grad(functools.partial(loss, kernel_conv),
                                        argnums=(0, 1)))(x, w)
  (lr, gr) = jax.value_and_grad(
      lambda a, b: jnp.sum(_ste_reference_conv(a, b, kw) * probe), argnums=(0, 1))(x, w)
  np.testing.assert_allclose(lk, lr, rtol=1e-6)
  np.testing.assert_allclose(gk[0], gr[0], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(gk[1], gr[1], rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(kernel_conv(ste_sign(x), ste_sign(w)), ref_conv(x, w))


def _ste_reference_conv(x, w, kw):
  """The fake-quant reference: the float conv of ste_sign'd operands."""
  xq, wq = ste_sign(x), ste_sign(w)
  pads = jax.lax.padtype_to_pads(x.shape[1:3], w.shape[:2], (2, 2), kw["padding"])
  if kw["pad_value"] == 1.0:
    xq = jnp.pad(xq, ((0, 0), *pads, (0, 0)), constant_values=1)
    pads = ((0, 0), (0, 0))
  return jax.lax.conv_general_dilated(xq, wq, (2, 2), pads,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("pad_value", [0.0, 1.0])
def test_ste_gradients_take_the_compute_dtype(pad_value):
  """compute_dtype=bfloat16: the backward is the vjp of the float product of bfloat16
  operands accumulated in float32, as a layer's float path computes it (so the
  cotangent rounds to bfloat16), not the float32 one."""
  x, w = _data(2, 6, 5, 3, 3, 4, seed=5)
  probe = jnp.asarray(np.random.default_rng(6).standard_normal((2, 6, 5, 4)), jnp.float32)
  bf16 = jnp.bfloat16

  def loss(conv, x, w):
    return jnp.sum(conv(ste_sign(x), ste_sign(w)) * probe)

  packed = functools.partial(binary_conv_ste, pad_value=pad_value, implementation="xla",
                             compute_dtype=bf16)
  float_bf16 = lambda a, b: float_conv.conv2d(  # noqa: E731
      a.astype(bf16), b.astype(bf16), pad_value=pad_value,
      preferred_element_type=jnp.float32)
  float_f32 = lambda a, b: float_conv.conv2d(a, b, pad_value=pad_value)  # noqa: E731
  grads = {name: jax.grad(functools.partial(loss, f), argnums=(0, 1))(x, w)
           for name, f in (("packed", packed), ("bf16", float_bf16), ("f32", float_f32))}
  for got, want in zip(grads["packed"], grads["bf16"]):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  assert not np.allclose(grads["packed"][1], grads["f32"][1], rtol=1e-5, atol=0)

  dense = lambda a, b: jnp.sum(jnp.sin(a) * b)  # noqa: E731
  xd, wd = x.reshape(-1, 3)[:7], w.reshape(-1, 4)[:3]
  g_packed = jax.grad(lambda a, b: dense(
      binary_dense_ste(ste_sign(a), ste_sign(b), compute_dtype=bf16), 1.0), (0, 1))(xd, wd)
  g_bf16 = jax.grad(lambda a, b: dense(jnp.dot(
      ste_sign(a).astype(bf16), ste_sign(b).astype(bf16),
      preferred_element_type=jnp.float32), 1.0), (0, 1))(xd, wd)
  for got, want in zip(g_packed, g_bf16):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_dense_ste_gradient_is_the_dense_gradient():
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.standard_normal((3, 40)), jnp.float32) * 0.5
  w = jnp.asarray(rng.standard_normal((40, 6)), jnp.float32) * 0.5

  def loss(dot, x, w):
    return jnp.sum(jnp.sin(dot(ste_sign(x), ste_sign(w))))

  gk = jax.grad(functools.partial(loss, binary_dense_ste), argnums=(0, 1))(x, w)
  gr = jax.grad(functools.partial(loss, jnp.dot), argnums=(0, 1))(x, w)
  np.testing.assert_allclose(gk[0], gr[0], rtol=1e-6)
  np.testing.assert_allclose(gk[1], gr[1], rtol=1e-6)
