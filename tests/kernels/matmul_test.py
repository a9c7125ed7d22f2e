"""xnor_matmul: every implementation equals sign(A) @ sign(B) exactly
(docs/packed.md#the-xnor-popcount-dot-product).

One shared test class, subclassed per implementation; the Pallas kernels run in
interpret mode on CPU (their lowering for cuda/tpu is checked in lowering_test.py).
"""

import functools

import jax
import numpy as np
import pytest

from bnnjax.kernels import api
from bnnjax.kernels import pack_bits
from bnnjax.kernels import pallas_gpu
from bnnjax.kernels import pallas_tpu
from bnnjax.kernels import reference
from bnnjax.kernels import xla

# (M, K, N): every K of the issue, M = 1 included, N around the Pallas tiles.
SHAPES = [(1, 1, 1), (1, 31, 7), (5, 32, 3), (3, 33, 130), (1, 1000, 9), (9, 4097, 5)]


def _problem(m, k, n, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((m, k)).astype(np.float32)
  b = rng.standard_normal((k, n)).astype(np.float32)
  a[0, 0] = 0.0  # sign(0) = +1
  expected = np.where(a >= 0, 1, -1).astype(np.int64) @ np.where(b >= 0, 1, -1)
  return pack_bits(a, axis=1), pack_bits(b, axis=0), expected


class _XnorMatmulTests:
  """Subclasses set ``matmul(a_packed, b_packed, k)``."""

  matmul = None
  shapes = SHAPES

  def _matmul(self, a, b, k):
    return type(self).matmul(a, b, k)

  def test_exact_against_sign_product(self):
    for m, k, n in self.shapes:
      a, b, expected = _problem(m, k, n, seed=k)
      out = np.asarray(self._matmul(a, b, k))
      assert out.dtype == np.int32, (m, k, n)
      np.testing.assert_array_equal(out, expected, err_msg=str((m, k, n)))

  def test_extreme_values_all_equal_and_all_opposite(self):
    k = 100
    ones = np.ones((2, k), np.float32)
    a = pack_bits(ones, axis=1)
    b = pack_bits(np.stack([ones[0], -ones[0]], 1), axis=0)
    np.testing.assert_array_equal(np.asarray(self._matmul(a, b, k)), [[k, -k], [k, -k]])


class TestReference(_XnorMatmulTests):
  matmul = staticmethod(jax.jit(reference.xnor_matmul_reference, static_argnums=2))


class TestPopcountReference(_XnorMatmulTests):
  matmul = staticmethod(jax.jit(reference.xnor_matmul_popcount_reference,
                                static_argnums=2))


class TestXla(_XnorMatmulTests):
  matmul = staticmethod(jax.jit(xla.xnor_matmul, static_argnums=2))


class TestXlaSmallBlocks(_XnorMatmulTests):
  """The blocked loop with a tail (W % block_words != 0) on every shape."""

  matmul = staticmethod(jax.jit(functools.partial(xla.xnor_matmul, block_words=3),
                                static_argnums=2))


class TestPallasGpuPopcountInterpret(_XnorMatmulTests):
  matmul = staticmethod(functools.partial(pallas_gpu.xnor_matmul, method="popcount",
                                          interpret=True))


class TestPallasGpuMmaInterpret(_XnorMatmulTests):
  matmul = staticmethod(functools.partial(pallas_gpu.xnor_matmul, method="mma",
                                          interpret=True))
  shapes = [(1, 31, 7), (3, 33, 130), (9, 4097, 5)]


class TestPallasTpuInterpret(_XnorMatmulTests):
  matmul = staticmethod(functools.partial(pallas_tpu.xnor_matmul, interpret=True))
  shapes = [(1, 1, 1), (1, 31, 7), (3, 33, 130), (9, 4097, 5)]


class TestApiDefault(_XnorMatmulTests):
  """The dispatcher with the platform default (xla on this CPU)."""

  matmul = staticmethod(api.xnor_matmul)
  shapes = [(1, 31, 7), (3, 33, 130)]


# ------------------------------------------------------------------------- dispatch
def test_default_chain_on_cpu_is_xla():
  assert api.resolve(None) == (("xla",) if jax.default_backend() == "cpu"
                               else api.DEFAULT_CHAIN[jax.default_backend()])


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks the CPU fallback")
def test_unavailable_kernel_falls_back_in_a_chain_and_raises_alone():
  a, b, expected = _problem(2, 40, 3)
  out = api.xnor_matmul(a, b, 40, implementation=("pallas_gpu", "xla"))
  np.testing.assert_array_equal(out, expected)
  with pytest.raises(api.Unavailable, match="implementation='pallas_tpu' needs a TPU"):
    api.xnor_matmul(a, b, 40, implementation="pallas_tpu")
  with pytest.raises(api.Unavailable, match="pallas_gpu.*pallas_tpu"):
    api.xnor_matmul(a, b, 40, implementation=("pallas_gpu", "pallas_tpu"))


def test_interpret_runs_a_pallas_implementation_through_the_api():
  a, b, expected = _problem(2, 40, 3)
  out = api.xnor_matmul(a, b, 40, implementation="pallas_gpu", interpret=True)
  np.testing.assert_array_equal(out, expected)


def test_bad_arguments_name_what_is_allowed():
  a, b, _ = _problem(2, 40, 3)
  with pytest.raises(ValueError, match="'cuda' is not a known implementation.*xla"):
    api.xnor_matmul(a, b, 40, implementation="cuda")
  with pytest.raises(ValueError, match="k=80"):
    api.xnor_matmul(a, b, 80)
  with pytest.raises(ValueError, match="k=0"):
    api.xnor_matmul(a, b, 0)
  with pytest.raises(ValueError, match="uint32"):
    api.xnor_matmul(a.astype(np.int32), b, 40)
  with pytest.raises(ValueError, match=r"\(M, W\)"):
    api.xnor_matmul(a[0], b, 40)
  with pytest.raises(ValueError, match="method='x'"):
    pallas_gpu.xnor_matmul(a, b, 40, method="x", interpret=True)
