"""Command line: prepare datasets ahead of training and say what was done.

  python -m bnnjax.data.prepare mnist fashion_mnist [--data_dir DIR]

Embedded datasets are fetched, verified and prepared (see ``bnnjax.data.prepare``,
the function); for stock tfds datasets it reports whether they are prepared and, if
not, how to prepare them. Exits with status 1 if any dataset is not ready.

(Run this module with ``-m``; in Python import the function from ``bnnjax.data``.)
"""

from __future__ import annotations

import argparse
import sys
import time

from bnnjax.data import datasets
from bnnjax.data import embedded


def main(argv: list[str] | None = None) -> int:
  """Prepares each named dataset, printing one line per action; returns exit status."""
  parser = argparse.ArgumentParser(
      prog="python -m bnnjax.data.prepare", description=__doc__.splitlines()[0])
  parser.add_argument("names", nargs="+", metavar="dataset",
                      help=f"tfds dataset names, e.g. {' '.join(datasets.EMBEDDED_DATASETS)}")
  parser.add_argument("--data_dir", default=None,
                      help="tfds data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
  args = parser.parse_args(argv)
  status = 0
  for name in args.names:
    start = time.perf_counter()
    try:
      path = datasets.prepare(name, args.data_dir, log=print)
    except (ValueError, FileNotFoundError, embedded.FetchError) as e:
      print(f"{name}: FAILED: {e}", file=sys.stderr)
      status = 1
      continue
    print(f"{name}: ready at {path} ({time.perf_counter() - start:.1f} s)")
  return status


if __name__ == "__main__":
  sys.exit(main())
