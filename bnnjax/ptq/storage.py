"""What a quantized model costs to store (the seed's Tables 1 and 5; docs/ptq.md#storage).

The stored file is, for each tensor in name order, its bytes with no header (the
model's structure is known from its code):

* a quantized tensor: its codes packed in ``n`` bits each (two's complement for the
  signed schemes, little-endian bit order, the tensor padded to a whole byte), then
  its scales: ``float32`` ``Δ`` and ``int32`` ``z`` per scale (asymmetric),
  ``float32`` ``s`` (symmetric), ``int16`` ``e_max`` (power of two);
* any other tensor: ``float32``.

The seed stores its quantized models "back in floating point notation" and compresses
that file (Table 5); :func:`storage_report` gives both: the packed file and the
``float32`` file of the dequantized values, each raw, after gzip (level 6, the
``gzip`` default) and after LZMA (Python's :mod:`lzma`, the xz container of 7-Zip's
algorithm, preset 6, the ``xz`` default).
"""

from __future__ import annotations

import gzip
import lzma
import math
from typing import Mapping

import numpy as np

from bnnjax.ptq.quantizers import Quantized


def pack_codes(codes, bits: int) -> bytes:
  """Integer codes packed in ``bits`` bits each (low bits of two's complement,
  least significant bit first), ``ceil(size·bits/8)`` bytes.

  >>> pack_codes([1, 2, 3], 2).hex()  # 01 10 11 from the lowest bits: 0b00111001
  '39'
  """
  c = np.asarray(codes, np.int64).ravel()
  u = (c & ((1 << bits) - 1)).astype(np.uint8)
  planes = (u[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
  return np.packbits(planes.ravel(), bitorder="little").tobytes()


def unpack_codes(data: bytes, *, bits: int, count: int, signed: bool) -> np.ndarray:
  """Inverse of :func:`pack_codes`: the first ``count`` codes as ``int32``."""
  flat = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
  planes = flat[:count * bits].reshape(count, bits).astype(np.int32)
  u = planes @ (1 << np.arange(bits, dtype=np.int32))
  if signed:
    u = np.where(u >= 1 << (bits - 1), u - (1 << bits), u)
  return u.astype(np.int32)


def scale_bytes(q: Quantized) -> bytes:
  """The stored scale parameters of ``q`` (see the module docstring)."""
  scale = np.asarray(q.scale).ravel()
  if q.scheme == "asymmetric":
    return (scale.astype("<f4").tobytes()
            + np.asarray(q.zero_point).ravel().astype("<i4").tobytes())
  if q.scheme == "symmetric":
    return scale.astype("<f4").tobytes()
  return np.rint(np.log2(scale)).astype("<i2").tobytes()


def quantized_bytes(q: Quantized) -> bytes:
  """One quantized tensor as stored: packed codes, then its scales."""
  return pack_codes(q.codes, q.bits) + scale_bytes(q)


def packed_size(q: Quantized) -> int:
  """``ceil(size·n/8)`` plus the bytes of the scales: ``len(quantized_bytes(q))``.

  >>> import jax.numpy as jnp
  >>> from bnnjax.ptq.quantizers import quantize
  >>> packed_size(quantize(jnp.arange(5.0), scheme="symmetric", bits=3))  # 2 + 4
  6
  """
  per_scale = {"asymmetric": 8, "symmetric": 4, "power_of_two": 2}[q.scheme]
  return math.ceil(q.codes.size * q.bits / 8) + per_scale * q.num_scales


def float_bytes(x) -> bytes:
  """A tensor as little-endian ``float32``."""
  return np.asarray(x, "<f4").tobytes()


def compressed_sizes(data: bytes) -> dict[str, int]:
  """``{"gzip": ..., "lzma": ...}``: bytes of ``data`` after gzip -6 and LZMA (xz -6)."""
  return {"gzip": len(gzip.compress(data, compresslevel=6, mtime=0)),
          "lzma": len(lzma.compress(data, preset=6))}


def storage_report(quantized: Mapping[str, Quantized], others: Mapping[str, object],
                   *, compress: bool = True) -> dict[str, int]:
  """Sizes in bytes of one model stored with ``quantized`` tensors and ``others``.

  Args:
    quantized: name → :class:`Quantized` of the quantized tensors.
    others: name → array of the tensors kept in float32.
    compress: also compress the two files (gzip and LZMA; the slow part).

  Returns:
    ``float32``: every tensor as float32 (the unquantized model);
    ``packed``: the packed file (codes in ``n`` bits, scales, other tensors float32);
    ``packed_gzip``/``packed_lzma``: that file compressed;
    ``dequantized_gzip``/``dequantized_lzma``: the float32 file of the dequantized
    values compressed (the seed's Table 5 way of storing).
  """
  overlap = set(quantized) & set(others)
  if overlap:
    raise ValueError(f"tensors both quantized and kept in float: {sorted(overlap)}")
  names = sorted(set(quantized) | set(others))
  packed, dequantized = [], []
  n_float = 0
  for name in names:
    if name in quantized:
      q = quantized[name]
      packed.append(quantized_bytes(q))
      dequantized.append(float_bytes(q.values))
      n_float += q.codes.size
    else:
      b = float_bytes(others[name])
      packed.append(b)
      dequantized.append(b)
      n_float += np.size(others[name])
  packed_file = b"".join(packed)
  out = {"float32": 4 * n_float, "packed": len(packed_file)}
  if compress:
    for key, data in (("packed", packed_file), ("dequantized", b"".join(dequantized))):
      for algo, size in compressed_sizes(data).items():
        out[f"{key}_{algo}"] = size
  return out
