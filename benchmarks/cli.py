"""The command line and results files shared by the benchmarks built on a ``Config``
dataclass (``kernels``, ``xnorpp_fidelity``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
from typing import Callable, Sequence


def parse_args(config_cls, argv: Sequence[str] | None, *, description: str,
               out_help: str):
  """``--field=value`` for every field of ``config_cls`` and ``--out``.

  Returns ``(config_cls(...), out)``.
  """
  p = argparse.ArgumentParser(description=description)
  for field in dataclasses.fields(config_cls):
    p.add_argument(f"--{field.name}", type=type(field.default), default=field.default)
  p.add_argument("--out", default="benchmarks/results", help=out_help)
  args = vars(p.parse_args(argv))
  out = args.pop("out")
  return config_cls(**args), out


def write_results(results: dict, stem: str,
                  format_markdown: Callable[[dict], str]) -> tuple[str, str]:
  """Writes ``stem.json`` and ``stem.md`` (creating the directory); returns the paths
  of the markdown and JSON files."""
  os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
  with open(stem + ".json", "w") as f:
    json.dump(results, f, indent=1, ensure_ascii=False)
    f.write("\n")
  with open(stem + ".md", "w") as f:
    f.write(format_markdown(results))
  return stem + ".md", stem + ".json"


def main(module: str, argv: Sequence[str] | None, *, parse, run_benchmark, write,
         format_markdown) -> dict:
  """Parses ``argv`` (default: the command line), runs the benchmark, writes and
  prints its results; the results record the command as ``python -m <module> ...``."""
  argv = sys.argv[1:] if argv is None else list(argv)
  cfg, out = parse(argv)
  command = shlex.join(["python", "-m", module, *argv])
  results = run_benchmark(cfg, command)
  md_path, json_path = write(results, out)
  print(format_markdown(results))
  print(f"wrote {md_path} and {json_path}")
  return results
