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
from bnnjax.kernels.packing import unpack_bits

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


class TestXlaWideColumns(_XnorMatmulTests):
  """More than UNROLLED_MAX_COLUMNS columns: one reduce (W <= FUSED_MAX_WORDS) or the
  blocked loop, instead of the unrolled sum the default shapes take."""

  matmul = staticmethod(jax.jit(xla.xnor_matmul, static_argnums=2))
  shapes = [(2, 100, 300), (3, 1000, 257)]

  def test_the_shapes_take_the_other_paths(self):
    assert not xla.unrolled_is_faster(4, 300) and 4 <= xla.FUSED_MAX_WORDS
    assert not xla.unrolled_is_faster(32, 257) and 32 > xla.FUSED_MAX_WORDS
    assert xla.unrolled_is_faster(32, 9)  # (1, 1000, 9) of SHAPES


class TestXlaSmallBlocks(_XnorMatmulTests):
  """The blocked loop with a tail (W % block_words != 0) on every shape."""

  matmul = staticmethod(jax.jit(functools.partial(xla.xnor_matmul, block_words=3),
                                static_argnums=2))


class TestPallasGpuPopcountInterpret(_XnorMatmulTests):
  """Default tiling: one column tile, split-K chunks of up to 32 words, 1-17 rows
  (17: two row tiles)."""

  matmul = staticmethod(functools.partial(pallas_gpu.xnor_matmul, method="popcount",
                                          interpret=True))
  shapes = SHAPES + [(16, 100, 3), (17, 65, 2)]


class TestPallasGpuPopcountSplitKInterpret(_XnorMatmulTests):
  """Small tiles forced so that there are several column tiles (masked at N), several
  chunks of several steps (the last one masked past W) and several row tiles."""

  matmul = staticmethod(functools.partial(pallas_gpu.xnor_matmul, method="popcount",
                                          interpret=True, block=(2, 8), splits=3))
  shapes = [(1, 1000, 9), (3, 33, 13), (17, 300, 20)]


class TestPallasGpuMmaInterpret(_XnorMatmulTests):
  matmul = staticmethod(functools.partial(pallas_gpu.xnor_matmul, method="mma",
                                          interpret=True))
  shapes = [(1, 31, 7), (3, 33, 130), (9, 4097, 5)]


class TestPallasGpuMmaA8Interpret(TestPallasGpuMmaInterpret):
  matmul = staticmethod(functools.partial(pallas_gpu.xnor_matmul, method="mma_a8",
                                          interpret=True))


class TestPallasGpuMmaSmallTilesInterpret(_XnorMatmulTests):
  """(16, 16, 2) tiles: a 3×3 grid with padded rows and columns, 4 K steps, the last
  one with padded words."""

  matmul = staticmethod(functools.partial(pallas_gpu.xnor_matmul, method="mma",
                                          interpret=True, block=(16, 16, 2)))
  shapes = [(33, 200, 40)]


class TestPallasGpuMmaA8SmallTilesInterpret(TestPallasGpuMmaSmallTilesInterpret):
  matmul = staticmethod(functools.partial(pallas_gpu.xnor_matmul, method="mma_a8",
                                          interpret=True, block=(16, 16, 2)))


class TestPallasGpuMmaA8WideTilesInterpret(_XnorMatmulTests):
  """The wide tiles mma_a8 takes on large grids, on a ragged shape (3 row and 2
  column tiles, padded rows, columns and words)."""

  matmul = staticmethod(functools.partial(pallas_gpu.xnor_matmul, method="mma_a8",
                                          interpret=True,
                                          block=pallas_gpu.MMA_A8_WIDE_BLOCK))
  shapes = [(300, 200, 400)]


class TestPallasGpuAutoInterpret(_XnorMatmulTests):
  """method="auto" on both sides of POPCOUNT_MAX_ROWS."""

  matmul = staticmethod(functools.partial(pallas_gpu.xnor_matmul, interpret=True))
  shapes = [(16, 70, 3), (17, 70, 3)]


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU")
@pytest.mark.parametrize("method,block,splits", [
    ("popcount", None, None), ("popcount", (2, 8), 3), ("mma", None, None),
    ("mma_a8", None, None), ("mma", (16, 16, 2), None), ("mma_a8", (16, 16, 2), None),
    ("mma_a8", pallas_gpu.MMA_A8_WIDE_BLOCK, None)])
def test_pallas_gpu_native_exact(method, block, splits):
  """The compiled kernels on a real GPU, on the interpret tests' edge shapes."""
  for m, k, n in [(3, 33, 130), (17, 300, 20), (70, 1000, 300)]:
    a, b, expected = _problem(m, k, n, seed=k)
    out = pallas_gpu.xnor_matmul(a, b, k, method=method, block=block, splits=splits)
    np.testing.assert_array_equal(np.asarray(out), expected, err_msg=str((m, k, n)))


def test_pallas_gpu_plans_split_k_and_tiles():
  """The tilings the interpret tests run, and the issue's shapes, are what they claim."""
  # The forced small tiles: 3 chunks of 6 steps over 32 words, 2 column tiles.
  p = pallas_gpu.popcount_plan(1, 32, 9, block=(2, 8), splits=3)
  assert (p["splits"], p["steps"], p["n_tiles"]) == (3, 6, 2)
  assert p["splits"] * p["steps"] * p["bw"] > 32  # the last chunk is masked
  p = pallas_gpu.popcount_plan(17, 10, 20, block=(2, 8), splits=3)
  assert (p["m_tiles"], p["bm"], p["splits"], p["steps"]) == (2, 9, 3, 2)
  # Default: (9, 4097, 5) is split into many chunks even with one column tile.
  assert pallas_gpu.popcount_plan(9, 129, 5)["splits"] > 1
  # GEMV 1×16384×16384: 32-word (32 KiB) blocks, >= TARGET_PROGRAMS / 2 programs.
  p = pallas_gpu.popcount_plan(1, 512, 16384)
  assert (p["bw"], p["bn"]) == (32, 256)
  assert p["n_tiles"] * p["splits"] >= pallas_gpu.TARGET_PROGRAMS // 2
  # More rows: fewer words per step, so the per-row accumulators stay bounded.
  p = pallas_gpu.popcount_plan(16, 512, 16384)
  assert p["bm"] * p["bw"] <= pallas_gpu.POPCOUNT_ACC_WORDS and p["splits"] > 1
  # MMA: one dot of K = 32·bk = 128 per step at the big shapes.
  p = pallas_gpu.mma_plan(4096, 256, 8192)
  assert (p["bm"], p["bn"], 32 * p["bk"]) == (128, 128, 128)
  # mma_a8: 128×256 tiles where the grid still has 2 programs per SM (4096×8192: 32×32),
  # not where it would leave SMs idle (256×8192: 2×32 programs).
  p = pallas_gpu.mma_plan(4096, 256, 8192, a_unpacked=True)
  assert (p["bm"], p["bn"], 32 * p["bk"]) == (128, 256, 128)
  assert pallas_gpu.mma_plan(256, 256, 8192, a_unpacked=True)["bn"] == 128
  assert pallas_gpu.mma_plan(33, 7, 40, block=(16, 16, 2))["wp"] == 8


def test_pallas_gpu_auto_picks_by_rows_and_columns():
  assert pallas_gpu.choose_method(1, 16384) == "popcount"
  assert pallas_gpu.choose_method(pallas_gpu.POPCOUNT_MAX_ROWS, 16384) == "popcount"
  assert pallas_gpu.choose_method(pallas_gpu.POPCOUNT_MAX_ROWS + 1, 64) == "mma"
  assert pallas_gpu.choose_method(4096, 8192) == "mma_a8"


def test_pallas_gpu_unpack_order_matches_unpack_bits():
  """unpack_cols / unpack_rows give the bits in unpack_bits' order (0/1 int8)."""
  a, b, _ = _problem(3, 64, 5)
  a32 = jax.lax.bitcast_convert_type(a, np.int32)
  b32 = jax.lax.bitcast_convert_type(b, np.int32)
  np.testing.assert_array_equal(pallas_gpu.unpack_cols(a32),
                                unpack_bits(a, 64, axis=1, dtype=np.bool_))
  np.testing.assert_array_equal(pallas_gpu.unpack_rows(b32),
                                unpack_bits(b, 64, axis=0, dtype=np.bool_))


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
