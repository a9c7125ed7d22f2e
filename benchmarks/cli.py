"""The command line and results files shared by the benchmarks built on a ``Config``
dataclass (``kernels``, ``xnorpp_fidelity``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import sys
from typing import Callable, Sequence


def parse_args(config_cls, argv: Sequence[str] | None, *, description: str,
               out_help: str = "the directory the results files are written to"):
  """``--field=value`` for every field of ``config_cls`` (``--field`` /
  ``--no-field`` for a bool) and ``--out``.

  Returns ``(config_cls(...), out)``.
  """
  p = argparse.ArgumentParser(description=description)
  for field in dataclasses.fields(config_cls):
    if isinstance(field.default, bool):
      p.add_argument(f"--{field.name}", action=argparse.BooleanOptionalAction,
                     default=field.default)
    else:
      p.add_argument(f"--{field.name}", type=type(field.default), default=field.default)
  p.add_argument("--out", default="benchmarks/results", help=out_help)
  args = vars(p.parse_args(argv))
  out = args.pop("out")
  return config_cls(**args), out


# The CPU features the packed kernels and XLA:CPU's convolutions depend on (vector
# width, vector popcount, int8/bf16 dot products, AMX tiles).
SIMD_FLAGS = ("avx2", "avx512f", "avx512_vpopcntdq", "avx512_vnni", "avx512_bf16",
              "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


def cpu_description(cpuinfo: str | None = None) -> str:
  """The CPU a benchmark ran on, as ``"<model name> (<SIMD flags>)"``, e.g.
  ``"AMD EPYC (avx2)"``, from ``/proc/cpuinfo`` (or the text ``cpuinfo``): the
  machines lent to sessions differ (AVX2 on some, AVX-512 on others), so a result
  names its CPU; ``platform.machine()`` (``x86_64``) where there is no cpuinfo."""
  import platform
  if cpuinfo is None:
    try:
      with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    except OSError:
      return platform.processor() or platform.machine()
  model = re.search(r"^(?:model name|Model)\s*:\s*(.+)$", cpuinfo, re.M)
  flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", cpuinfo, re.M)
  name = model.group(1).strip() if model else (platform.processor() or platform.machine())
  have = set(flags.group(1).split()) if flags else set()
  simd = [f for f in SIMD_FLAGS if f in have]
  return f"{name} ({', '.join(simd) or 'no AVX2'})"


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


def config_main(module: str, config_cls, argv: Sequence[str] | None, *, doc: str,
                results_name: str, run_benchmark, format_markdown) -> dict:
  """:func:`main` for a benchmark whose flags are ``config_cls``'s fields
  (:func:`parse_args`, described by ``doc``'s first line) and whose results are
  ``<out>/<results_name>_<platform>.md`` / ``.json``."""
  return main(
      module, argv,
      parse=lambda a: parse_args(config_cls, a, description=doc.split("\n")[0]),
      run_benchmark=run_benchmark,
      write=lambda r, out: write_results(r, f"{out}/{results_name}_{r['platform']}",
                                         format_markdown),
      format_markdown=format_markdown)
