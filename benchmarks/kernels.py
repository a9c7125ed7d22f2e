r"""Speed of the bit-packed XNOR-popcount kernels against float products (docs/packed.md).

Every row times one exact ±1 product two ways in the same run and reports the ratio
``t(baseline) / t(packed)`` (> 1: the packed kernel is faster):

* matmuls ``M×K×N`` (GEMV 1×4096×4096, 16×4096×4096, 1024³): ``jnp.dot`` of the ±1
  matrices in float32 (also bfloat16, and int8 with int32 accumulation), against
  :func:`bnnjax.kernels.xnor_matmul` on pre-packed operands (weights are packed once,
  offline; the activation side of a network is timed in the conv rows).
* ResNet-18's binary 3×3 conv layers at ImageNet geometry (56², 28², 14², 7² maps,
  64-512 channels, the stride-2 ones included), batch 1 and 32:
  ``lax.conv_general_dilated`` of ±1 float32 data against
  :func:`bnnjax.kernels.binary_conv_packed` from the *float* activations, i.e.
  including their sign, bit packing, im2col and the zero-padding correction; the
  kernel is packed offline.

Times are the minimum over ``--repeats`` runs after a warm-up call (compilation
excluded), each ``jax.block_until_ready``'d.

``--device=cpu`` (default) times ``implementation="xla"``. ``--device=gpu`` times the
Pallas GPU kernels (``pallas_gpu`` with both its popcount and int8-MMA paths) and
XLA's dots on the GPU; it needs a GPU and refuses to run without one.

Usage::

  python -m benchmarks.kernels --out=benchmarks/results

writes ``kernels_<device>.md`` and ``kernels_<device>.json`` to ``--out``.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks import cli
from bnnjax import kernels
from bnnjax.kernels import pallas_gpu

RESULTS_NAME = "kernels"
MATMULS = ((1, 4096, 4096), (16, 4096, 4096), (1024, 1024, 1024))
# ResNet-18 binary 3×3 convs at ImageNet geometry: (H=W of the input, c_in, c_out, stride).
RESNET18_CONVS = ((56, 64, 64, 1), (56, 64, 128, 2), (28, 128, 128, 1),
                  (28, 128, 256, 2), (14, 256, 256, 1), (14, 256, 512, 2),
                  (7, 512, 512, 1))
TARGETS = {"gemv_1": 10.0, "matmul_1024": 4.0, "resnet18_conv": 3.0}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
  """Settings of one run (every field is a flag).

  Attributes:
    device: ``"cpu"`` or ``"gpu"``.
    repeats: timed runs per measurement (the minimum is reported).
    batches: conv batch sizes, comma-separated.
    scale: divide every matmul dimension and conv channel count by this (smoke tests).
    max_convs: time only the first this many ResNet-18 layers (0: all).
    seed: PRNG seed of the random ±1 data.
  """

  device: str = "cpu"
  repeats: int = 10
  batches: str = "1,32"
  scale: int = 1
  max_convs: int = 0
  seed: int = 0

  def __post_init__(self):
    if self.device not in ("cpu", "gpu"):
      raise ValueError(f"Config.device={self.device!r}; allowed values are 'cpu', 'gpu'.")
    if self.repeats < 1 or self.scale < 1:
      raise ValueError("Config.repeats and Config.scale must be >= 1.")
    try:
      batches = [int(b) for b in self.batches.split(",")]
    except ValueError as e:
      raise ValueError(f"Config.batches={self.batches!r}; allowed values are "
                       "comma-separated positive ints, e.g. '1,32'.") from e
    if not batches or min(batches) < 1:
      raise ValueError(f"Config.batches={self.batches!r}; must be positive ints.")

  @property
  def batch_list(self) -> list[int]:
    return [int(b) for b in self.batches.split(",")]


def time_fn(fn: Callable, *args, repeats: int) -> float:
  """Minimum wall time (s) of ``fn(*args)`` over ``repeats`` runs after a warm-up."""
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t)
  return best


def _pm1(key, shape, dtype=jnp.float32):
  return jnp.where(jax.random.bernoulli(key, 0.5, shape), 1, -1).astype(dtype)


def _packed_impls(cfg: Config) -> dict[str, dict]:
  """Name → ``xnor_matmul`` options of the packed kernels timed on this device."""
  if cfg.device == "cpu":
    return {"xla": dict(implementation="xla")}
  return {"pallas_gpu": dict(implementation="pallas_gpu"),
          "pallas_gpu_popcount": dict(method="popcount"),
          "pallas_gpu_mma": dict(method="mma"),
          "xla": dict(implementation="xla")}


def _matmul_fn(options: dict, k: int):
  if "method" in options:
    return jax.jit(functools.partial(pallas_gpu.xnor_matmul, k=k, **options))
  return jax.jit(lambda a, b: kernels.xnor_matmul(a, b, k, **options))


def bench_matmuls(cfg: Config) -> list[dict]:
  rows = []
  key = jax.random.key(cfg.seed)
  for m, k, n in MATMULS:
    m2, k2, n2 = max(1, m // cfg.scale), max(1, k // cfg.scale), max(1, n // cfg.scale)
    if m == 1:
      m2 = 1
    ka, kb, key = jax.random.split(key, 3)
    a, b = _pm1(ka, (m2, k2)), _pm1(kb, (k2, n2))
    ap, bp = kernels.pack_bits(a, axis=1), kernels.pack_bits(b, axis=0)
    expected = np.asarray(jnp.dot(a, b)).astype(np.int64)
    base = {
        "f32": (jax.jit(jnp.dot), (a, b)),
        "bf16": (jax.jit(jnp.dot), (a.astype(jnp.bfloat16), b.astype(jnp.bfloat16))),
        "int8": (jax.jit(functools.partial(jnp.dot, preferred_element_type=jnp.int32)),
                 (a.astype(jnp.int8), b.astype(jnp.int8))),
    }
    times = {name: time_fn(f, *args, repeats=cfg.repeats) for name, (f, args) in base.items()}
    for name, options in _packed_impls(cfg).items():
      f = _matmul_fn(options, k2)
      out = np.asarray(f(ap, bp))
      if not np.array_equal(out, expected):
        raise AssertionError(f"{name} is not exact on {m2}×{k2}×{n2}.")
      times[name] = time_fn(f, ap, bp, repeats=cfg.repeats)
    label = {1: "gemv_1", 16: "gemv_16"}.get(m, "matmul_1024")
    rows.append({"name": label, "shape": [m2, k2, n2], "times_s": times})
  return rows


def bench_convs(cfg: Config) -> list[dict]:
  rows = []
  key = jax.random.key(cfg.seed + 1)
  impls = _packed_impls(cfg)
  for batch in cfg.batch_list:
    layers = RESNET18_CONVS[:cfg.max_convs] if cfg.max_convs else RESNET18_CONVS
    for hw, c_in, c_out, stride in layers:
      c_in2, c_out2 = max(1, c_in // cfg.scale), max(1, c_out // cfg.scale)
      kx, kw, key = jax.random.split(key, 3)
      x = jax.random.normal(kx, (batch, hw, hw, c_in2), jnp.float32)
      w = _pm1(kw, (3, 3, c_in2, c_out2))
      w_packed = kernels.pack_conv_kernel(w)
      pads = ((1, 1), (1, 1))
      f32 = jax.jit(lambda x, w: lax.conv_general_dilated(
          jnp.where(x >= 0, 1.0, -1.0), w, (stride, stride), pads,
          dimension_numbers=("NHWC", "HWIO", "NHWC")))
      times = {"f32": time_fn(f32, x, w, repeats=cfg.repeats)}
      expected = np.asarray(f32(x, w))
      for name, options in impls.items():
        if "method" in options:  # the conv goes through the dispatcher
          continue
        fn = jax.jit(lambda x, wp, o=options: kernels.binary_conv_packed(
            kernels.pack_bits(x, axis=-1), wp, in_features=c_in2, strides=stride,
            padding=pads, pad_value=0.0, **o))
        if not np.array_equal(np.asarray(fn(x, w_packed)), expected):
          raise AssertionError(f"{name} conv is not exact on {(hw, c_in2, c_out2, stride)}.")
        times[name] = time_fn(fn, x, w_packed, repeats=cfg.repeats)
      rows.append({"name": "resnet18_conv", "batch": batch,
                   "shape": [hw, c_in2, c_out2, stride], "times_s": times})
  return rows


def _ratios(rows: list[dict], packed: str) -> None:
  for r in rows:
    t = r["times_s"]
    r["speedup_vs"] = {b: t[b] / t[packed] for b in t if b != packed and packed in t}


def summarise(matmuls, convs, packed: str) -> dict:
  """Ratios per row and the geometric mean over ResNet-18 layers per batch."""
  _ratios(matmuls, packed)
  _ratios(convs, packed)
  summary = {}
  for r in matmuls:
    summary[r["name"]] = r["speedup_vs"]["f32"]
  for b in sorted({r["batch"] for r in convs}):
    ratios = [r["speedup_vs"]["f32"] for r in convs if r["batch"] == b]
    summary[f"resnet18_conv_b{b}_geomean"] = float(np.exp(np.mean(np.log(ratios))))
    summary[f"resnet18_conv_b{b}_min"] = float(min(ratios))
  return summary


def format_markdown(results: dict) -> str:
  packed = results["packed_impl"]
  lines = [
      f"# Packed XNOR-popcount kernels vs float products ({results['device']})",
      "",
      f"Generated by `benchmarks/kernels.py` on {results['date']}; command: "
      f"`{results['command']}`. jax {results['jax_version']}.",
      "",
      f"Ratio = time of the float product / time of `{packed}` (> 1: packed is faster);"
      " minimum over "
      f"{results['config']['repeats']} runs. Every packed result was checked equal to "
      "the float product.",
      "",
      "## Matmuls (packed operands)",
      "",
      "| shape M×K×N | f32 ms | packed ms | vs f32 | vs bf16 | vs int8 |",
      "|---|---|---|---|---|---|",
  ]
  for r in results["matmuls"]:
    t, s = r["times_s"], r["speedup_vs"]
    lines.append(f"| {'×'.join(map(str, r['shape']))} | {1e3 * t['f32']:.3f} | "
                 f"{1e3 * t[packed]:.3f} | {s['f32']:.1f}× | {s['bf16']:.1f}× | "
                 f"{s['int8']:.1f}× |")
  lines += ["", "## ResNet-18 binary 3×3 convs, ImageNet geometry (pad 0, with correction;"
            " packed time includes sign, packing and im2col of the activations)", "",
            "| batch | H=W | c_in→c_out | stride | f32 ms | packed ms | vs f32 |",
            "|---|---|---|---|---|---|---|"]
  for r in results["convs"]:
    t, s = r["times_s"], r["speedup_vs"]
    hw, ci, co, st = r["shape"]
    lines.append(f"| {r['batch']} | {hw} | {ci}→{co} | {st} | {1e3 * t['f32']:.3f} | "
                 f"{1e3 * t[packed]:.3f} | {s['f32']:.1f}× |")
  lines += ["", "## Summary (speed-up vs f32)", "", "| measure | ratio | target |",
            "|---|---|---|"]
  for name, v in results["summary"].items():
    target = next((f"≥ {t:g}×" for k, t in TARGETS.items()
                   if name == k or name.startswith(k + "_b")), "")
    lines.append(f"| {name} | {v:.1f}× | {target} |")
  lines += ["", f"Wall time {results['wall_time_s']:.0f} s. {results['note']}", ""]
  return "\n".join(lines)


def run_benchmark(cfg: Config, command: str = "") -> dict:
  if cfg.device == "gpu" and jax.default_backend() != "gpu":
    raise RuntimeError(f"--device=gpu needs a GPU; this process runs on "
                       f"{jax.default_backend()!r}.")
  t0 = time.perf_counter()
  matmuls = bench_matmuls(cfg)
  convs = bench_convs(cfg)
  packed = "xla" if cfg.device == "cpu" else "pallas_gpu"
  summary = summarise(matmuls, convs, packed)
  dev = jax.devices()[0]
  return {
      "benchmark": RESULTS_NAME,
      "command": command,
      "config": dataclasses.asdict(cfg),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "device": f"{dev.platform} ({dev.device_kind}, {os.cpu_count()} CPUs, "
                f"{cli.cpu_description()})",
      "jax_version": jax.__version__,
      "packed_impl": packed,
      "matmuls": matmuls,
      "convs": convs,
      "summary": summary,
      "wall_time_s": time.perf_counter() - t0,
      "note": ("Shared machine: other jobs ran concurrently, so times are noisy "
               "(minimum over repeats reduces, but does not remove, the noise)."),
  }


def write_results(results: dict, out_dir: str) -> tuple[str, str]:
  """Writes ``kernels_<device>.md`` and ``.json`` to ``out_dir``; returns their paths."""
  stem = os.path.join(out_dir, f"{RESULTS_NAME}_{results['config']['device']}")
  return cli.write_results(results, stem, format_markdown)


def parse_args(argv: Sequence[str] | None = None) -> tuple[Config, str]:
  return cli.parse_args(Config, argv, description=__doc__.split("\n")[0],
                        out_help="directory for kernels_<device>.{md,json}")


def main(argv: Sequence[str] | None = None) -> dict:
  return cli.main("benchmarks.kernels", argv, parse=parse_args,
                  run_benchmark=run_benchmark, write=write_results,
                  format_markdown=format_markdown)


if __name__ == "__main__":
  main()
