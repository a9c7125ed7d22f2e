"""IDX parsing: header, dtypes, gzip, and malformed files."""

import gzip

import numpy as np
import pytest

from bnnjax.data import idx


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
  header = bytes([0, 0, type_code, array.ndim])
  header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
  return header + array.tobytes()


def test_roundtrip_uint8_images():
  images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  np.testing.assert_array_equal(idx.parse_idx(idx_bytes(images)), images)


def test_big_endian_int32():
  values = np.array([1, -2, 70000], dtype=">i4")
  out = idx.parse_idx(idx_bytes(values, 0x0C))
  np.testing.assert_array_equal(out, [1, -2, 70000])


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_raw_or_gzip(tmp_path, compress):
  labels = np.array([5, 0, 4, 1, 9], np.uint8)
  data = idx_bytes(labels)
  path = tmp_path / "labels-idx1-ubyte"
  path.write_bytes(gzip.compress(data) if compress else data)
  np.testing.assert_array_equal(idx.read_idx(path), labels)


def test_bad_magic():
  with pytest.raises(idx.IdxFormatError, match="bad magic"):
    idx.parse_idx(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")


def test_unknown_type():
  with pytest.raises(idx.IdxFormatError, match="element type"):
    idx.parse_idx(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]))


def test_length_mismatch():
  data = idx_bytes(np.zeros((3, 2), np.uint8))
  with pytest.raises(idx.IdxFormatError, match=r"shape \(3, 2\)"):
    idx.parse_idx(data[:-1])
