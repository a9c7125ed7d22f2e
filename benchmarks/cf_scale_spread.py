"""How the weight scales of trained BW-CF-n / XNOR-CF-n runs spread across filters
(issue 14: why sharing a scale over more filters gains here instead of costing).

In the zoo's Bi-Real ResNet-18 a binary conv's output ``α_o · (sign(W_o) ⊛ ·)`` is
added to the shortcut with no batch norm after it, so ``α_o`` sets how much filter
``o`` contributes to the residual stream (with a batch norm after the conv, as in the
cross-filter paper's NIN and VGG-7, a per-channel ``α_o`` cancels in the forward and
backward pass up to the batch norm's ε: tests/methods/cross_filter_test.py). Cross-filter compression replaces each ``α_o`` by the mean over its group of
``n`` filters. For every binary layer of each run this reads the trained latent kernel
``W`` and the layer's folded scale (:meth:`bnnjax.nn.QuantConv.folded_scale`) and
reports, averaged over layers:

* ``scale CV``: the coefficient of variation (std/mean) over the layer's filters of
  the scale each filter is multiplied by (``α_o`` for n = 1, its group's mean else);
* ``below half``: the share of filters whose scale is under half the layer's mean;
* ``min/mean |W_o|``: the smallest filter's ``mean|W_o|`` over the layer's mean (of
  the latent weights, shared scale or not).

    python -m benchmarks.cf_scale_spread [--runs=runs/reproduce/cf_resnet18]

Reads every ``{bw,xnor}_cf_<n>_seed<s>`` run with a checkpoint under ``--runs`` (the
``cf_t3`` runs of :mod:`benchmarks.reproduce`) and writes ``cf_scale_spread.{json,md}``
to ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import sys
from typing import Sequence

import numpy as np

from benchmarks import cli

RUN = re.compile(r"^(bw|xnor)_cf_(\d+)_seed(\d+)$")


def layer_spread(kernel: np.ndarray, scale: np.ndarray) -> dict:
  """The spread of one layer's per-filter scales: ``kernel`` ``(..., c_out)``, ``scale``
  the folded scale (a scalar, ``(c_out,)`` or broadcastable to it)."""
  filt = np.abs(kernel).reshape(-1, kernel.shape[-1]).mean(axis=0)  # mean|W_o|
  if np.size(scale) not in (1, filt.size):
    raise ValueError(f"scale of shape {np.shape(scale)} is not one per filter "
                     f"({filt.size}) or one per layer: not a cross-filter layer.")
  s = np.broadcast_to(np.abs(np.asarray(scale, np.float64)).reshape(-1), filt.shape)
  return {"scale_cv": float(s.std() / s.mean()),
          "below_half": float(np.mean(s < 0.5 * s.mean())),
          "min_over_mean_w": float(filt.min() / filt.mean())}


def run_spread(workdir: str) -> dict:
  """Averages of :func:`layer_spread` over the binary-kernel convs of a trained run,
  with the run's test top-1."""
  from flax import nnx

  from bnnjax import nn
  from bnnjax.train import trainer

  model, _, _ = trainer.load_trained(workdir)
  rows = [layer_spread(np.asarray(m.kernel[...]), np.asarray(m.folded_scale()))
          for _, m in nnx.iter_graph(model)
          if isinstance(m, nn.QuantConv) and m.spec.binary_kernel]
  if not rows:
    raise ValueError(f"{workdir}: no binary-kernel conv to measure.")
  out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
  out["layers"] = len(rows)
  with open(os.path.join(workdir, "results.json")) as f:
    out["test_top1"] = 100 * json.load(f)["test/top1"]
  return out


def find_runs(root: str) -> list[tuple[str, int, int, str]]:
  """``(method, n, seed, path)`` of every finished cross-filter run under ``root``."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f"--runs={root!r} is not a directory.")
  found = []
  for name in sorted(os.listdir(root)):
    m = RUN.match(name)
    path = os.path.join(root, name)
    if m and os.path.exists(os.path.join(path, "results.json")):
      found.append((m.group(1), int(m.group(2)), int(m.group(3)), path))
  if not found:
    raise FileNotFoundError(f"no finished {{bw,xnor}}_cf_<n>_seed<s> run under {root!r}.")
  return found


def summarise(per_run: list[dict]) -> list[dict]:
  """Means over seeds per ``(method, n)``."""
  groups: dict[tuple[str, int], list[dict]] = {}
  for r in per_run:
    groups.setdefault((r["method"], r["n"]), []).append(r)
  keys = ("scale_cv", "below_half", "min_over_mean_w", "test_top1")
  return [{"method": m, "n": n, "seeds": len(rs),
           **{k: float(np.mean([r[k] for r in rs])) for k in keys}}
          for (m, n), rs in sorted(groups.items())]


def format_markdown(r: dict) -> str:
  lines = ["# Weight-scale spread of trained cross-filter runs", "",
           f"`{r['command']}` ({r['date']}); runs under `{r['runs']}`. Means over "
           "the binary-kernel convs of each run, then over seeds (module docstring "
           "of `benchmarks/cf_scale_spread.py`).", "",
           "| method | n | seeds | scale CV | below half | min/mean \\|W_o\\| | test top-1 (%) |",
           "|---|---|---|---|---|---|---|"]
  for s in r["summary"]:
    lines.append(f"| {s['method'].upper()}-CF | {s['n']} | {s['seeds']} | "
                 f"{s['scale_cv']:.3f} | {100 * s['below_half']:.1f}% | "
                 f"{s['min_over_mean_w']:.2f} | {s['test_top1']:.2f} |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
  argv = sys.argv[1:] if argv is None else list(argv)
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--runs", default="runs/reproduce/cf_resnet18")
  p.add_argument("--out", default="benchmarks/results")
  args = p.parse_args(argv)
  per_run = [{"method": m, "n": n, "seed": s, "path": path, **run_spread(path)}
             for m, n, s, path in find_runs(args.runs)]
  results = {"command": shlex.join(["python", "-m", "benchmarks.cf_scale_spread", *argv]),
             "date": datetime.datetime.now().isoformat(timespec="seconds"),
             "runs": args.runs, "per_run": per_run, "summary": summarise(per_run)}
  md, js = cli.write_results(results, os.path.join(args.out, "cf_scale_spread"),
                             format_markdown)
  print(format_markdown(results))
  print(f"wrote {md} and {js}")
  return results


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  main()
