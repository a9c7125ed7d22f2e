"""The per-shape float conv lowerings compute lax.conv_general_dilated's function."""

import functools
import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from bnnjax.kernels import float_conv


def _reference(x, w, strides, pads, pad_value):
  xp = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=pad_value)
  return lax.conv_general_dilated(xp, w, strides, "VALID",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  precision=lax.Precision.HIGHEST)


def _rel_err(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-30))


CASES = [  # (H, W, c_in, c_out, kernel, stride, padding)
    (1, 1, 8, 4, 3, 1, ((1, 1), (1, 1))),  # 1×1 map: only the centre tap is real
    (2, 2, 8, 4, 3, 1, ((1, 1), (1, 1))),
    (2, 2, 8, 4, 3, 2, ((1, 1), (1, 1))),
    (3, 5, 6, 4, 3, 2, "SAME"),
    (4, 4, 5, 3, 1, 1, "VALID"),
    (7, 7, 3, 4, 7, 2, ((3, 3), (3, 3))),  # stem-like, few channels
    (7, 6, 4, 4, 3, 1, ((0, 2), (3, 1))),  # asymmetric, a tap that sees only border
    (9, 9, 4, 4, 5, 3, "VALID"),
    (14, 14, 16, 8, 3, 1, "SAME"),
    (28, 28, 16, 8, 3, 2, ((1, 1), (1, 1))),
    (56, 56, 4, 4, 3, 1, "SAME"),
]


@pytest.mark.parametrize("i", range(len(CASES)),
                         ids=lambda i: "{0}x{1}k{4}s{5}".format(*CASES[i]))
@pytest.mark.parametrize("lowering", float_conv.LOWERINGS)
def test_values_and_both_gradients_match_xla(i, lowering):
  h, w_, c_in, c_out, k, s, padding = CASES[i]
  pad_value = float(i % 2)  # a +1 border (binary inputs) in every other case
  rng = np.random.default_rng(h * 100 + k)
  x = jnp.asarray(rng.standard_normal((2, h, w_, c_in)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((k, k, c_in, c_out)), jnp.float32)
  pads = float_conv.conv_pads(padding, (k, k), (s, s), (h, w_))

  def ours(x, w):  # at the reference's precision: on a GPU the default is TF32
    return float_conv.conv2d(x, w, strides=s, padding=padding, pad_value=pad_value,
                             lowering=lowering, precision=lax.Precision.HIGHEST)

  def ref(x, w):
    return _reference(x, w, (s, s), pads, pad_value)
  y, y_ref = ours(x, w), ref(x, w)
  assert y.shape == y_ref.shape
  assert _rel_err(y, y_ref) < 1e-5
  ct = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  g = jax.grad(lambda x, w: jnp.sum(ours(x, w) * ct), (0, 1))(x, w)
  g_ref = jax.grad(lambda x, w: jnp.sum(ref(x, w) * ct), (0, 1))(x, w)
  for a, b in zip(g, g_ref):
    assert _rel_err(a, b) < 1e-5


def test_pm1_operands_are_exact_under_jit():
  """±1 operands give integers, exactly, as the packed kernels do."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(np.where(rng.standard_normal((3, 2, 2, 64)) >= 0, 1.0, -1.0), jnp.float32)
  w = jnp.asarray(np.where(rng.standard_normal((3, 3, 64, 8)) >= 0, 1.0, -1.0), jnp.float32)
  for low in float_conv.LOWERINGS:
    y = jax.jit(lambda x, w: float_conv.conv2d(x, w, padding="SAME", lowering=low))(x, w)
    np.testing.assert_array_equal(y, _reference(x, w, (1, 1), ((1, 1), (1, 1)), 0.0))


def test_choose_lowering_with_avx512():
  pads, none = ((1, 1), (1, 1)), ((0, 0), (0, 0))
  choose = functools.partial(float_conv.choose_lowering, avx512=True)
  assert choose((2, 4, 4, 8), (3, 3, 8, 8), (1, 1), pads, "cpu") == "xla"  # tiny
  # Image stems: im2col.
  assert choose((64, 28, 28, 1), (7, 7, 1, 64), (2, 2), pads, "cpu") == "im2col"
  assert choose((32, 28, 28, 1), (3, 3, 1, 16), (1, 1), pads, "cpu") == "im2col"
  # Stride 1 on maps of 4×4 and more: XLA's conv, forward and both gradients (the
  # README model's first stages, the peer's 7×7 and 4×4 stages, large maps).
  assert choose((128, 28, 28, 16), (3, 3, 16, 16), (1, 1), pads, "cpu") == "xla"
  assert choose((128, 14, 14, 32), (3, 3, 32, 32), (1, 1), pads, "cpu") == "xla"
  assert choose((32, 28, 28, 8), (3, 3, 8, 64), (1, 1), pads, "cpu") == "xla"
  assert choose((64, 7, 7, 64), (3, 3, 64, 64), (1, 1), pads, "cpu") == "xla"
  assert choose((64, 4, 4, 128), (3, 3, 128, 128), (1, 1), pads, "cpu") == "xla"
  assert choose((32, 56, 56, 32), (3, 3, 32, 32), (1, 1), pads, "cpu") == "xla"
  # Maps below 4×4 (XLA collapses on 2×2), strides above 1 and 1×1 kernels: taps.
  assert choose((64, 2, 2, 256), (3, 3, 256, 256), (1, 1), pads, "cpu") == "taps"
  assert choose((64, 1, 1, 512), (3, 3, 512, 512), (1, 1), pads, "cpu") == "taps"
  assert choose((32, 3, 3, 64), (3, 3, 64, 64), (1, 1), pads, "cpu") == "taps"
  assert choose((128, 28, 28, 16), (3, 3, 16, 32), (2, 2), pads, "cpu") == "taps"
  assert choose((64, 7, 7, 64), (3, 3, 64, 128), (2, 2), pads, "cpu") == "taps"
  assert choose((64, 1, 1, 256), (1, 1, 256, 512), (1, 1), none, "cpu") == "taps"
  assert choose((32, 28, 28, 16), (1, 1, 16, 32), (2, 2), none, "cpu") == "taps"
  for platform in ("gpu", "tpu"):
    assert choose((64, 2, 2, 256), (3, 3, 256, 256), (1, 1), pads, platform) == "xla"


def test_choose_lowering_without_avx512():
  pads, none = ((1, 1), (1, 1)), ((0, 0), (0, 0))
  choose = functools.partial(float_conv.choose_lowering, avx512=False)
  assert choose((64, 2, 2, 256), (3, 3, 256, 256), (1, 1), pads, "cpu") == "taps"
  assert choose((64, 28, 28, 1), (7, 7, 1, 64), (2, 2), pads, "cpu") == "im2col"
  assert choose((64, 1, 1, 256), (1, 1, 256, 512), (1, 1), none, "cpu") == "taps"
  assert choose((2, 4, 4, 8), (3, 3, 8, 8), (1, 1), pads, "cpu") == "xla"  # tiny
  # Narrow: XLA on maps above 2×2, taps on 2×2 and smaller maps and at 48+ channels.
  assert choose((32, 7, 7, 8), (3, 3, 8, 8), (1, 1), pads, "cpu") == "xla"
  assert choose((32, 14, 14, 32), (3, 3, 32, 32), (1, 1), pads, "cpu") == "xla"
  # XLA's input gradient collapsed on larger problems (the README model's first
  # stage): its forward conv, the taps lowering's gradients.
  assert choose((128, 28, 28, 16), (3, 3, 16, 16), (1, 1), pads, "cpu") == "xla_taps"
  assert choose((32, 2, 2, 32), (3, 3, 32, 32), (1, 1), pads, "cpu") == "taps"
  assert choose((64, 4, 4, 16), (3, 3, 16, 32), (2, 2), pads, "cpu") == "taps"  # → 2×2
  assert choose((32, 28, 28, 48), (3, 3, 48, 48), (1, 1), pads, "cpu") == "xla_taps"
  assert choose((32, 56, 56, 32), (3, 3, 32, 32), (1, 1), pads, "cpu") == "xla_taps"
  assert choose((32, 14, 14, 48), (3, 3, 48, 48), (1, 1), pads, "cpu") == "taps"
  assert choose((32, 28, 28, 16), (1, 1, 16, 32), (2, 2), none, "cpu") == "taps"  # 1×1
  assert choose((32, 28, 28, 1), (3, 3, 1, 16), (1, 1), pads, "cpu") == "im2col"
  assert choose((32, 28, 28, 8), (3, 3, 8, 64), (1, 1), pads, "cpu") == "im2col"


def test_cpu_has_avx512_reads_the_cpu_flags():
  with open("/proc/cpuinfo") if os.path.exists("/proc/cpuinfo") else open(os.devnull) as f:
    flags = [line.split() for line in f if line.startswith("flags")]
  assert float_conv.cpu_has_avx512() == bool(flags and "avx512f" in flags[0])


def test_errors_name_the_argument():
  x, w = jnp.zeros((1, 4, 4, 3)), jnp.zeros((3, 3, 3, 2))
  with pytest.raises(ValueError, match="lowering='fft'"):
    float_conv.conv2d(x, w, lowering="fft")
  with pytest.raises(ValueError, match="c_in=3"):
    float_conv.conv2d(x, jnp.zeros((3, 3, 4, 2)))
  with pytest.raises(ValueError, match="does not fit"):
    float_conv.conv2d(jnp.zeros((1, 2, 2, 3)), w, padding="VALID")
  with pytest.raises(ValueError, match="strides"):
    float_conv.conv2d(x, w, strides=0)
