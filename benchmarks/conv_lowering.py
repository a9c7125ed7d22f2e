r"""Which float-conv lowering is fastest at each shape (:mod:`bnnjax.kernels.float_conv`).

For every conv of the Bi-Real ResNet-18 that ``benchmarks/train_speed.py`` trains
(28×28×1 input, ImageNet stem, width 64: maps 14², 7², 4², 2², 1²) and a few larger
maps (14², 28², 56²), times forward and forward+both-gradients of each lowering
(``xla``, ``taps``, ``im2col``, ``xla_taps``) in the same run, alternating them, and reports the
median, the fastest lowering and the one :func:`~bnnjax.kernels.float_conv.choose_lowering`
picks, with its ratio to XLA's conv.

``--shapes=narrow`` times instead the narrow convs (8-48 channels) of the tests' and
notebooks' small models, where ``choose_lowering`` keeps XLA's conv on maps above 2×2.

Usage::

  python -m benchmarks.conv_lowering --batch=64 --repeats=15
  python -m benchmarks.conv_lowering --shapes=narrow --batch=128 --repeats=5

writes ``conv_lowering_<platform>.md`` / ``.json`` (``conv_lowering_narrow_...`` for
``--shapes=narrow``) to ``--out``.
"""

from __future__ import annotations

import dataclasses
import datetime
import statistics
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import cli
from bnnjax.kernels import float_conv

RESULTS_NAME = "conv_lowering"
# (H=W of the input, c_in, c_out, kernel, stride, padding): the Bi-Real ResNet-18 of
# the Larq peer (28×28×1, ImageNet stem, width 64), then larger maps.
SHAPES = (
    (28, 1, 64, 7, 2, 3),
    (7, 64, 64, 3, 1, 1), (7, 64, 128, 3, 2, 1), (4, 128, 128, 3, 1, 1),
    (4, 128, 256, 3, 2, 1), (2, 256, 256, 3, 1, 1), (2, 256, 512, 3, 2, 1),
    (1, 512, 512, 3, 1, 1), (4, 64, 128, 1, 1, 0), (2, 128, 256, 1, 1, 0),
    (1, 256, 512, 1, 1, 0),
    (14, 64, 64, 3, 1, 1), (28, 64, 64, 3, 1, 1), (56, 64, 64, 3, 1, 1),
)
# Narrow convs: a width-8 ResNet-18 on 28×28 (7² … 1² maps), wider maps at 16-48
# channels, and a stride-2 1×1 shortcut; the rule's boundaries (2×2 maps, 32 channels,
# NARROW_CONV_MACS multiply-adds) lie between them.
NARROW_SHAPES = (
    (7, 8, 8, 3, 1, 1), (7, 8, 16, 3, 2, 1), (4, 16, 16, 3, 1, 1),
    (4, 16, 32, 3, 2, 1), (2, 32, 32, 3, 1, 1), (2, 32, 64, 3, 2, 1),
    (1, 64, 64, 3, 1, 1), (4, 32, 32, 3, 1, 1), (7, 32, 32, 3, 1, 1),
    (14, 16, 16, 3, 1, 1), (28, 8, 8, 3, 1, 1), (28, 16, 16, 3, 1, 1),
    (28, 32, 32, 3, 1, 1), (28, 48, 48, 3, 1, 1), (56, 32, 32, 3, 1, 1),
    (28, 16, 32, 1, 2, 0),
)
SHAPE_SETS = {"peer": SHAPES, "narrow": NARROW_SHAPES}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
  """Settings of one run (every field is a flag).

  Attributes:
    batch: batch size.
    repeats: timed runs per lowering and direction (alternated; median reported).
    max_shapes: time only the first this many shapes (0: all).
    seed: PRNG seed of the random data.
    shapes: which shapes: ``peer`` (:data:`SHAPES`) or ``narrow``
      (:data:`NARROW_SHAPES`).
  """

  batch: int = 64
  repeats: int = 15
  max_shapes: int = 0
  seed: int = 0
  shapes: str = "peer"

  def __post_init__(self):
    for name in ("batch", "repeats"):
      if getattr(self, name) < 1:
        raise ValueError(f"--{name}={getattr(self, name)}; allowed values are >= 1.")
    if self.shapes not in SHAPE_SETS:
      raise ValueError(f"--shapes={self.shapes!r}; allowed values are "
                       f"{sorted(SHAPE_SETS)}.")


def _fns(shape, lowering):
  h, c_in, c_out, k, s, p = shape
  pad = ((p, p), (p, p))

  def fwd(x, w):
    return float_conv.conv2d(x, w, strides=s, padding=pad, lowering=lowering)

  def both(x, w, ct):
    y, vjp = jax.vjp(fwd, x, w)
    return vjp(ct)
  return jax.jit(fwd), jax.jit(both)


def run_benchmark(cfg: Config, command: str = "") -> dict:
  rng = np.random.default_rng(cfg.seed)
  rows = []
  shapes = SHAPE_SETS[cfg.shapes]
  shapes = shapes[:cfg.max_shapes] if cfg.max_shapes else shapes
  for shape in shapes:
    h, c_in, c_out, k, s, p = shape
    x = jnp.asarray(rng.standard_normal((cfg.batch, h, h, c_in)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, c_in, c_out)), jnp.float32)
    fns = {low: _fns(shape, low) for low in float_conv.LOWERINGS}
    ct = jax.block_until_ready(fns["xla"][0](x, w))
    times = {(low, d): [] for low in fns for d in ("fwd", "fwd_bwd")}
    calls = {}
    for low, (fwd, both) in fns.items():
      calls[(low, "fwd")] = lambda fwd=fwd: fwd(x, w)
      calls[(low, "fwd_bwd")] = lambda both=both: both(x, w, ct)
      for c in (calls[(low, "fwd")], calls[(low, "fwd_bwd")]):
        jax.block_until_ready(c())  # compile
    for _ in range(cfg.repeats):  # alternate the lowerings
      for key, c in calls.items():
        t0 = time.perf_counter()
        jax.block_until_ready(c())
        times[key].append(time.perf_counter() - t0)
    med = {f"{low}/{d}": statistics.median(v) * 1e3 for (low, d), v in times.items()}
    pads = ((p, p), (p, p))
    chosen = float_conv.choose_lowering(x.shape, w.shape, (s, s), pads, "cpu")
    best = min(float_conv.LOWERINGS, key=lambda low: med[f"{low}/fwd_bwd"])
    rows.append({"shape": list(shape), "ms": med, "best_fwd_bwd": best,
                 "chosen": chosen,
                 "chosen_speedup_vs_xla": med["xla/fwd_bwd"] / med[f"{chosen}/fwd_bwd"]})
  return {"benchmark": RESULTS_NAME, "command": command, "config": dataclasses.asdict(cfg),
          "platform": jax.default_backend(), "machine": cli.cpu_description(),
          "cpus": __import__("os").cpu_count(),
          "date": datetime.date.today().isoformat(), "rows": rows}


def format_markdown(r: dict) -> str:
  lines = [f"# Float conv lowerings ({r['platform']}, {r['cpus']} cores, {r['date']})", "",
           f"Machine: {r['machine']}.", "",
           f"`{r['command']}`; batch {r['config']['batch']}, median of "
           f"{r['config']['repeats']} alternated runs, ms. Shared machine: compare the "
           "ratios in a row, not absolute times across runs.", "",
           "| input | c_in→c_out | k/s/p | "
           + " | ".join(f"{low} {d}" for d in ("fwd", "f+b") for low in float_conv.LOWERINGS)
           + " | fastest | chosen | chosen vs xla |",
           "|---" * (6 + 2 * len(float_conv.LOWERINGS)) + "|"]
  for row in r["rows"]:
    h, ci, co, k, s, p = row["shape"]
    m = row["ms"]
    lines.append(
        f"| {h}×{h} | {ci}→{co} | {k}/{s}/{p} | " + " | ".join(
            f"{m[f'{low}/{d}']:.2f}" for d in ("fwd", "fwd_bwd")
            for low in float_conv.LOWERINGS)
        + f" | {row['best_fwd_bwd']} | {row['chosen']} | "
          f"{row['chosen_speedup_vs_xla']:.1f}× |")
  if r.get("note"):
    lines += ["", r["note"]]
  return "\n".join(lines) + "\n"


def _write(results, out):
  shapes = results["config"].get("shapes", "peer")
  name = RESULTS_NAME if shapes == "peer" else f"{RESULTS_NAME}_{shapes}"
  return cli.write_results(results, f"{out}/{name}_{results['platform']}",
                           format_markdown)


def main(argv: Sequence[str] | None = None) -> dict:
  return cli.main("benchmarks.conv_lowering", argv,
                  parse=lambda a: cli.parse_args(Config, a, description=__doc__.split(
                      "\n")[0], out_help="results directory"),
                  run_benchmark=run_benchmark, write=_write,
                  format_markdown=format_markdown)


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  main()
