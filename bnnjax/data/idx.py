"""Reading the IDX files of MNIST-like datasets.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a big-endian
header followed by the raw array: two zero bytes, one byte for the element type,
one byte for the number of dimensions ``d``, ``d`` unsigned 32-bit sizes, then
``prod(sizes)`` elements in C order. MNIST and Fashion-MNIST ship their images as
``uint8`` arrays of shape ``(n, 28, 28)`` and their labels as ``uint8`` arrays of
shape ``(n,)``, either raw or gzip-compressed.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

# IDX type byte -> numpy dtype (big-endian where it matters).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
  """A file is not a well-formed IDX array."""


def read_bytes(path: str | os.PathLike) -> bytes:
  """Returns the content of ``path``, gunzipped when it starts with the gzip magic.

  The decision is made on the content, not on the file name, so ``x-idx3-ubyte``
  and ``x-idx3-ubyte.gz`` are both accepted whatever their actual encoding.
  """
  with open(path, "rb") as f:
    data = f.read()
  if data[:2] == _GZIP_MAGIC:
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError) as e:
      raise IdxFormatError(f"{os.fspath(path)}: corrupt gzip stream ({e}).") from e
  return data


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
  """Parses IDX bytes into a read-only numpy array of the header's shape and dtype.

  Raises:
    IdxFormatError: when the magic number is wrong, the type byte is unknown, or
      the payload length differs from ``prod(shape) * itemsize``.
  """
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise IdxFormatError(f"{source}: not an IDX file (bad magic number).")
  type_code, ndim = data[2], data[3]
  if type_code not in _IDX_DTYPES:
    raise IdxFormatError(f"{source}: unknown IDX element type 0x{type_code:02x}.")
  dtype = _IDX_DTYPES[type_code]
  header = 4 + 4 * ndim
  if len(data) < header:
    raise IdxFormatError(f"{source}: truncated IDX header.")
  shape = tuple(
      int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(data) - header != expected:
    raise IdxFormatError(
        f"{source}: IDX header says shape {shape} ({expected} bytes of data) but "
        f"the file holds {len(data) - header} bytes.")
  return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file (raw or gzip-compressed) into a numpy array."""
  return parse_idx(read_bytes(path), source=os.fspath(path))
