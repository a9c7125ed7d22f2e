"""pack_bits / unpack_bits: the bit layout of docs/packed.md#bit-packing."""

import jax.numpy as jnp
import numpy as np
import pytest

from bnnjax.kernels import num_words
from bnnjax.kernels import pack_bits
from bnnjax.kernels import popcount_sum
from bnnjax.kernels import unpack_bits


def test_bit_layout_lsb_first_sign_zero_is_plus_one():
  x = np.full(33, -1.0)
  x[[0, 2, 31, 32]] = [1.0, 0.0, 5.0, 0.0]
  p = np.asarray(pack_bits(x))
  assert p.dtype == np.uint32 and p.shape == (2,)
  assert p[0] == (1 | 4 | (1 << 31)) and p[1] == 1  # padding bits of word 1 are 0


@pytest.mark.parametrize("k", [1, 33, 1000])
@pytest.mark.parametrize("axis", [0, -1])
def test_roundtrip(k, axis):
  shape = [3, 4, 2]
  shape[axis] = k
  x = np.random.default_rng(k).standard_normal(shape)
  p = pack_bits(x, axis=axis)
  assert p.shape[axis] == num_words(k)
  np.testing.assert_array_equal(unpack_bits(p, k, axis=axis), np.where(x >= 0, 1.0, -1.0))
  np.testing.assert_array_equal(unpack_bits(p, k, axis=axis, dtype=jnp.bool_), x >= 0)


def test_bool_input_is_the_bits_and_popcount_counts_plus_ones():
  bits = np.random.default_rng(0).random((5, 70)) < 0.5
  p = pack_bits(bits)
  np.testing.assert_array_equal(pack_bits(np.where(bits, 1.0, -1.0)), p)
  np.testing.assert_array_equal(popcount_sum(p, axis=-1), bits.sum(-1))


def test_errors_name_the_argument():
  with pytest.raises(ValueError, match="axis=3"):
    pack_bits(np.ones((2, 2)), axis=3)
  with pytest.raises(ValueError, match="scalar"):
    pack_bits(1.0)
  with pytest.raises(ValueError, match="k=40"):
    unpack_bits(pack_bits(np.ones(5)), 40)
  with pytest.raises(ValueError, match="uint32"):
    unpack_bits(np.ones(2, np.int32), 5)
