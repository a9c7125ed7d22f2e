"""Packed storage sizes checked by hand on tiny tensors; the stored bytes decode back."""

import doctest
import gzip
import lzma

import jax.numpy as jnp
import numpy as np
import pytest

from bnnjax import ptq
from bnnjax.ptq import grouping
from bnnjax.ptq import metrics
from bnnjax.ptq import model as model_lib
from bnnjax.ptq import quantizers
from bnnjax.ptq import storage


@pytest.mark.parametrize("module", [quantizers, storage, metrics, grouping, model_lib])
def test_docstring_examples(module):
  failures, _ = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert failures == 0


def test_pack_by_hand():
  assert storage.pack_codes([1, 2, 3], 2) == bytes([0b00111001])
  # two's complement in 3 bits: -1 -> 111, 3 -> 011, -3 -> 101: 1111 1010 | 1
  assert storage.pack_codes([-1, 3, -3], 3) == bytes([0b01011111, 0b1])
  assert storage.pack_codes([255], 8) == b"\xff"
  assert storage.pack_codes([], 5) == b""


@pytest.mark.parametrize("bits", range(2, 9))
def test_pack_unpack_roundtrip(bits):
  rng = np.random.default_rng(bits)
  for signed, (lo, hi) in ((False, (0, 2**bits - 1)),
                           (True, (-(2**(bits - 1) - 1), 2**(bits - 1) - 1))):
    codes = rng.integers(lo, hi + 1, size=37)
    data = storage.pack_codes(codes, bits)
    assert len(data) == -(-37 * bits // 8)
    np.testing.assert_array_equal(
        storage.unpack_codes(data, bits=bits, count=37, signed=signed), codes)


X5 = jnp.array([0.1, -0.7, 0.3, 1.2, -0.05])


@pytest.mark.parametrize("scheme,per_scale", [("asymmetric", 8), ("symmetric", 4),
                                              ("power_of_two", 2)])
def test_sizes_by_hand(scheme, per_scale):
  # 5 codes of 3 bits = 15 bits -> 2 bytes, plus one scale (Δ f32 + z i32 / s f32 /
  # e_max i16).
  q = ptq.quantize(X5, scheme=scheme, bits=3)
  assert storage.packed_size(q) == 2 + per_scale == len(storage.quantized_bytes(q))
  # per channel: (5, 2) at 3 bits = 30 bits -> 4 bytes, plus two scales
  qc = ptq.quantize(jnp.stack([X5, 2 * X5], -1), scheme=scheme, bits=3, axis=-1)
  assert storage.packed_size(qc) == 4 + 2 * per_scale == len(storage.quantized_bytes(qc))


@pytest.mark.parametrize("scheme", ptq.SCHEMES)
def test_stored_bytes_decode_to_the_values(scheme):
  q = ptq.quantize(jnp.stack([X5, 8 * X5], -1), scheme=scheme, bits=5, axis=-1)
  data = storage.quantized_bytes(q)
  n_codes = -(-10 * 5 // 8)
  codes = storage.unpack_codes(data[:n_codes], bits=5, count=10,
                               signed=scheme != "asymmetric").reshape(5, 2)
  rest = data[n_codes:]
  if scheme == "asymmetric":
    scale = np.frombuffer(rest[:8], "<f4").reshape(1, 2)
    zero = np.frombuffer(rest[8:], "<i4").reshape(1, 2)
  elif scheme == "symmetric":
    scale, zero = np.frombuffer(rest, "<f4").reshape(1, 2), 0
  else:
    scale, zero = 2.0 ** np.frombuffer(rest, "<i2").reshape(1, 2).astype(np.float32), 0
  np.testing.assert_array_equal(codes, q.codes)
  np.testing.assert_array_equal(
      ptq.dequantize(codes, scale.astype(np.float32), zero, scheme=scheme, bits=5),
      q.values)


def test_storage_report_by_hand():
  q = ptq.quantize(X5, scheme="symmetric", bits=3)  # 2 + 4 bytes
  others = {"bn/mean": np.zeros(3, np.float32)}  # 12 bytes
  report = storage.storage_report({"conv/kernel": q}, others)
  assert report["float32"] == 4 * (5 + 3)
  assert report["packed"] == 6 + 12
  # the packed file is the tensors in name order: bn/mean, then conv/kernel
  packed_file = np.zeros(3, "<f4").tobytes() + storage.quantized_bytes(q)
  assert report["packed_gzip"] == len(gzip.compress(packed_file, 6, mtime=0))
  assert report["packed_lzma"] == len(lzma.compress(packed_file, preset=6))
  deq_file = np.zeros(3, "<f4").tobytes() + np.asarray(q.values, "<f4").tobytes()
  assert report["dequantized_gzip"] == len(gzip.compress(deq_file, 6, mtime=0))
  assert report["dequantized_lzma"] == len(lzma.compress(deq_file, preset=6))
  assert set(storage.storage_report({"a": q}, {}, compress=False)) == {"float32", "packed"}
  with pytest.raises(ValueError, match="both"):
    storage.storage_report({"a": q}, {"a": X5})
