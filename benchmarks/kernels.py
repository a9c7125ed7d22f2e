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
  including their sign, bit packing, gathering the taps (im2col, or the direct tap
  sum of short contractions) and the zero-padding correction; the
  kernel is packed offline.

Times are the minimum over ``--repeats`` runs after a warm-up call (compilation
excluded), each ``jax.block_until_ready``'d.

``--device=cpu`` (default) times ``implementation="xla"``. ``--device=gpu`` times the
Pallas GPU kernels (``pallas_gpu`` with its popcount, int8-MMA and int8-MMA with
XLA-unpacked activations paths) and XLA's dots on the GPU; it needs a GPU and refuses
to run without one. On the GPU it also runs the kernel table of issue 16
(:func:`bench_gpu_table`): for each ``M×K×N`` of ``--table``, the bf16 dot, the int8
dot and every packed path on the same ±1 matrices, each jit running ``--weights``
products on as many distinct weight matrices (launch overhead amortised, weights not
L2-resident), with a device-copy bandwidth, the packed weight bandwidth in TB/s and as
% of the copy rate, and the ratio to the int8 dot. ``--quick=1`` runs only that table
(3 repeats, at least 4 weight matrices per jit), sized to take under 2 minutes on an
H200 (an estimate: compile ≈ 30 jits, time ≈ 500 products).

Usage::

  python -m benchmarks.kernels --out=benchmarks/results
  python -m benchmarks.kernels --device=gpu --quick=1   # the GPU kernel table only
  python -m benchmarks.kernels --device=gpu --quick=1 --out=/tmp/tune \
      --table=1x16384x16384,4096x8192x8192 \
      --variants=popcount:64x256,popcount:32x512,mma_a8:256x64x4,mma_a8:256x128x4

writes ``kernels_<device>.md`` and ``kernels_<device>.json`` to ``--out``.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import sys
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
# Issue 16's GPU kernel table (M×K×N) and the pallas_gpu paths timed on it.
GPU_TABLE = ("1x16384x16384,4x16384x16384,16x16384x16384,256x8192x8192,"
             "4096x8192x8192,8192x8192x8192")
GPU_METHODS = ("popcount", "mma", "mma_a8")
# Each jit of the table cycles through at least this many bytes of packed weights
# (more weight matrices for small ones, at most GPU_MAX_WEIGHTS), so that no product
# finds its weights in L2 (50 MB on an H100/H200) from the previous run.
GPU_EVICT_BYTES = 128 * 2**20
GPU_MAX_WEIGHTS = 16
# Its targets: the GEMV at >= 70% of the copy rate on the packed weight bytes, and the
# large batch at >= 0.8x the int8 dot (issue 16).
GPU_TARGETS = {(1, 16384, 16384): ("copy_fraction", 0.7),
               (4096, 8192, 8192): ("vs_int8", 0.8)}


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
    quick: 1: only the GPU kernel table, with 4 weight matrices and 3 repeats.
    table: the GPU kernel table's shapes, ``MxKxN`` comma-separated.
    weights: distinct weight matrices (products) per jit in the GPU kernel table, at
      least (more where the packed weights are small, see ``GPU_EVICT_BYTES``).
    copy_mib: size of the array copied to measure the device's copy bandwidth.
    variants: extra tilings timed in the GPU kernel table (tuning), comma-separated
      ``method:BLOCK[:splits]`` with ``BLOCK`` ``bwxbn`` (popcount) or ``bmxbnxbk``
      (mma, mma_a8), e.g. ``mma_a8:256x64x4,popcount:64x256``; reported as
      ``method[BLOCK:splits]``.
    interpret: 1: run the Pallas kernels in interpret mode, so that the GPU kernel
      table runs on a CPU (a smoke test of this script; needs ``--device=gpu
      --quick=1``; the times mean nothing).
  """

  device: str = "cpu"
  repeats: int = 10
  batches: str = "1,32"
  scale: int = 1
  max_convs: int = 0
  seed: int = 0
  quick: int = 0
  table: str = GPU_TABLE
  weights: int = 8
  copy_mib: int = 1024
  variants: str = ""
  interpret: int = 0

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
    self.table_shapes  # validates
    self.variant_list  # validates
    if self.weights < 1 or self.copy_mib < 1:
      raise ValueError("Config.weights and Config.copy_mib must be >= 1.")
    if self.interpret and not (self.device == "gpu" and self.quick):
      raise ValueError("Config.interpret=1 runs the GPU kernel table on any backend; "
                       "it needs device='gpu' and quick=1.")

  @property
  def batch_list(self) -> list[int]:
    return [int(b) for b in self.batches.split(",")]

  @property
  def variant_list(self) -> list[tuple[str, tuple[int, ...], int | None]]:
    """``--variants`` as ``(method, block, splits)``."""
    out = []
    for item in filter(None, self.variants.split(",")):
      parts = item.split(":")
      try:
        method, block = parts[0], tuple(int(d) for d in parts[1].lower().split("x"))
        splits = int(parts[2]) if len(parts) > 2 else None
        ok = (len(parts) <= 3 and method in GPU_METHODS
              and len(block) == (2 if method == "popcount" else 3)
              and (splits is None or method == "popcount"))
      except (IndexError, ValueError):
        ok = False
      if not ok:
        raise ValueError(f"Config.variants={self.variants!r}: {item!r}; allowed values "
                         "are comma-separated method:BLOCK[:splits], e.g. "
                         "'mma_a8:256x64x4,popcount:64x256:8' (splits: popcount only).")
      out.append((method, block, splits))
    return out

  @property
  def table_shapes(self) -> list[tuple[int, int, int]]:
    """``--table`` with ``K``, ``N`` (and ``M`` above 16) divided by ``--scale``."""
    shapes = []
    for item in self.table.split(","):
      try:
        m, k, n = (int(d) for d in item.lower().split("x"))
      except ValueError as e:
        raise ValueError(f"Config.table={self.table!r}; allowed values are "
                         "comma-separated MxKxN, e.g. '1x16384x16384'.") from e
      if min(m, k, n) < 1:
        raise ValueError(f"Config.table={self.table!r}; dimensions must be >= 1.")
      s = self.scale
      shapes.append((m if m <= 16 else max(1, m // s), max(1, k // s), max(1, n // s)))
    return shapes


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
          "pallas_gpu_mma_a8": dict(method="mma_a8"),
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


def copy_bandwidth(cfg: Config) -> float:
  """The device's copy rate in bytes/s: ``2·S / t`` for an elementwise pass (read and
  write) over an ``S = --copy_mib`` MiB uint32 array."""
  x = jnp.zeros((cfg.copy_mib * 2**18,), jnp.uint32)
  t = time_fn(jax.jit(jnp.bitwise_not), x, repeats=cfg.repeats)
  return 2 * x.nbytes / t


def _timed_products(fn: Callable, a, weights, repeats: int):
  """``(outputs of the first product, seconds per product)``: one jit running
  ``fn(a, w)`` for every ``w`` of ``weights`` (distinct arrays: no slicing or copies),
  timed as a whole and divided by their number."""
  many = jax.jit(lambda a, ws: tuple(fn(a, w) for w in ws))
  out = many(a, weights)
  first = out[0]
  del out
  return first, time_fn(many, a, weights, repeats=repeats) / len(weights)


def bench_gpu_table(cfg: Config) -> dict:
  """Issue 16's kernel table: per ``M×K×N``, the bf16 dot (f32 accumulation), the int8
  dot (int32) and each :data:`GPU_METHODS` path of ``pallas_gpu`` on the same ±1
  matrices, all checked equal to the int8 dot; ``auto`` is the path
  :func:`pallas_gpu.choose_method` picks."""
  quick = bool(cfg.quick)
  repeats = 3 if quick else cfg.repeats
  min_r = min(cfg.weights, 4) if quick else cfg.weights
  copy_bps = copy_bandwidth(cfg)
  rows = []
  key = jax.random.key(cfg.seed + 2)
  for m, k, n in cfg.table_shapes:
    packed_bytes = 4 * (-(-k // 32)) * n
    r = max(min_r, min(GPU_MAX_WEIGHTS, -(-GPU_EVICT_BYTES // packed_bytes)))
    if cfg.interpret:
      r = min_r
    ka, key = jax.random.split(key)
    kws = jax.random.split(key, r + 1)
    key = kws[0]
    a = jax.random.bernoulli(ka, 0.5, (m, k))
    ws = [jax.random.bernoulli(kw, 0.5, (k, n)) for kw in kws[1:]]
    pm1 = lambda bits, dt: jnp.where(bits, 1, -1).astype(dt)
    words = -(-k // 32)
    weight_bytes = {"bf16": 2 * k * n, "int8": k * n}
    times, exact, failed = {}, {}, {}
    ref, times["int8"] = _timed_products(
        functools.partial(jnp.dot, preferred_element_type=jnp.int32),
        pm1(a, jnp.int8), [pm1(w, jnp.int8) for w in ws], repeats)
    out, times["bf16"] = _timed_products(
        functools.partial(jnp.dot, preferred_element_type=jnp.float32),
        pm1(a, jnp.bfloat16), [pm1(w, jnp.bfloat16) for w in ws], repeats)
    exact["bf16"] = bool(jnp.array_equal(out.astype(jnp.int32), ref))
    ap = kernels.pack_bits(a, axis=1)
    wps = [kernels.pack_bits(w, axis=0) for w in ws]
    del ws
    paths = [(method, method, None, None) for method in GPU_METHODS]
    for method, block, splits in cfg.variant_list:
      name = (f"{method}[{'x'.join(map(str, block))}"
              f"{'' if splits is None else f':{splits}'}]")
      paths.append((name, method, block, splits))
    for name, method, block, splits in paths:
      if quick and method == "popcount" and m > 4 * pallas_gpu.POPCOUNT_MAX_ROWS:
        continue  # far outside its regime, and slow
      fn = functools.partial(pallas_gpu.xnor_matmul, k=k, method=method, block=block,
                             splits=splits, interpret=bool(cfg.interpret))
      try:
        out, times[name] = _timed_products(fn, ap, wps, repeats)
      except jax.errors.JaxRuntimeError as e:
        if block is None:  # a default path must run
          raise
        # a tuning variant the card cannot run (e.g. more shared memory than an SM has)
        failed[name] = str(e).splitlines()[0][:200]
        print(f"{m}×{k}×{n} {name}: failed: {failed[name]}", file=sys.stderr, flush=True)
        continue
      print(f"{m}×{k}×{n} {name}: {1e6 * times[name]:.1f} µs", file=sys.stderr,
            flush=True)
      weight_bytes[name] = 4 * words * n
      exact[name] = bool(jnp.array_equal(out, ref))
      if not exact[name]:
        raise AssertionError(f"pallas_gpu {name} is not exact on {m}×{k}×{n}.")
    auto = pallas_gpu.choose_method(m, n)
    products = {}
    for name, t in times.items():
      bps = weight_bytes[name] / t
      products[name] = {"time_s": t, "weight_bytes": weight_bytes[name],
                        "weight_tbps": bps / 1e12, "copy_fraction": bps / copy_bps,
                        "vs_int8": times["int8"] / t}
    rows.append({"shape": [m, k, n], "auto": auto, "products": products,
                 "exact": exact, "failed": failed, "weights_per_jit": r})
  return {"copy_tbps": copy_bps / 1e12, "repeats": repeats, "rows": rows}


def _gpu_table_checks(table: dict) -> dict:
  """Issue 16's targets met or not (``auto`` path) on the rows the table has."""
  checks = {}
  for row in table["rows"]:
    target = GPU_TARGETS.get(tuple(row["shape"]))
    if target and row["auto"] in row["products"]:
      measure, bound = target
      value = row["products"][row["auto"]][measure]
      checks["×".join(map(str, row["shape"]))] = {
          "measure": measure, "value": value, "target": bound, "met": value >= bound}
  return checks


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


def format_gpu_table(results: dict) -> list[str]:
  """The markdown lines of the GPU kernel table (none without one)."""
  table = results.get("gpu_table")
  if not table:
    return []
  lines = [
      f"## GPU kernel table (issue 16), {results.get('device_kind', '?')}",
      "",
      f"Device copy rate {table['copy_tbps']:.2f} TB/s (read + write of "
      f"{results['config']['copy_mib']} MiB). Each time is one product: the minimum "
      f"over {table['repeats']} runs of one jit doing R products on R distinct weight "
      "matrices, divided by R. "
      "Weight TB/s = the product's own weight bytes (bf16: 2KN, int8: KN, packed: "
      "4·ceil(K/32)·N) / time; % copy = that / the copy rate; vs int8 = int8 dot "
      "time / time (> 1: faster). `auto` marks the path method=\"auto\" takes. Every "
      "product was checked equal to the int8 dot.",
      "",
      "| M×K×N | R | product | µs | weight TB/s | % copy | vs int8 |",
      "|---|---|---|---|---|---|---|",
  ]
  for row in table["rows"]:
    shape = "×".join(map(str, row["shape"]))
    for name, p in row["products"].items():
      label = name if name in ("bf16", "int8") else f"packed {name}"
      if name == row["auto"]:
        label += " (auto)"
      lines.append(f"| {shape} | {row['weights_per_jit']} | {label} | "
                   f"{1e6 * p['time_s']:.1f} | "
                   f"{p['weight_tbps']:.2f} | {100 * p['copy_fraction']:.0f}% | "
                   f"{p['vs_int8']:.2f}× |")
    for name, why in row.get("failed", {}).items():
      lines.append(f"| {shape} | {row['weights_per_jit']} | packed {name} | failed: "
                   f"{why} | | | |")
  checks = table.get("checks") or {}
  if checks:
    lines += ["", "| target (auto path) | measured | wanted | met |", "|---|---|---|---|"]
    for shape, c in checks.items():
      what = ("% copy" if c["measure"] == "copy_fraction" else "vs int8")
      value = (f"{100 * c['value']:.0f}%" if c["measure"] == "copy_fraction"
               else f"{c['value']:.2f}×")
      wanted = (f"≥ {100 * c['target']:.0f}%" if c["measure"] == "copy_fraction"
                else f"≥ {c['target']:g}×")
      lines.append(f"| {shape} {what} | {value} | {wanted} | "
                   f"{'yes' if c['met'] else 'no'} |")
  return lines + [""]


def format_markdown(results: dict) -> str:
  packed = results["packed_impl"]
  lines = [
      f"# Packed XNOR-popcount kernels vs float products ({results['device']})",
      "",
      f"Generated by `benchmarks/kernels.py` on {results['date']}; command: "
      f"`{results['command']}`. jax {results['jax_version']}.",
      "",
  ]
  lines += format_gpu_table(results)
  if results["matmuls"] or results["convs"]:
    lines += [
        f"Ratio = time of the float product / time of `{packed}` (> 1: packed is "
        "faster); minimum over "
        f"{results['config']['repeats']} runs. Every packed result was checked equal "
        "to the float product.",
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
    lines += ["", "## ResNet-18 binary 3×3 convs, ImageNet geometry (pad 0, with "
              "correction; packed time includes sign, packing and the taps' gather "
              "of the activations)", "",
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
    lines.append("")
  lines += [f"Wall time {results['wall_time_s']:.0f} s. {results['note']}", ""]
  return "\n".join(lines)


def run_benchmark(cfg: Config, command: str = "") -> dict:
  if cfg.device == "gpu" and jax.default_backend() != "gpu" and not cfg.interpret:
    raise RuntimeError(f"--device=gpu needs a GPU; this process runs on "
                       f"{jax.default_backend()!r}.")
  t0 = time.perf_counter()
  gpu_table = bench_gpu_table(cfg) if cfg.device == "gpu" else None
  if cfg.quick and cfg.device == "gpu":
    matmuls, convs = [], []
  else:
    matmuls = bench_matmuls(cfg)
    convs = bench_convs(cfg)
  packed = "xla" if cfg.device == "cpu" else "pallas_gpu"
  summary = summarise(matmuls, convs, packed)
  if gpu_table is not None:
    gpu_table["checks"] = _gpu_table_checks(gpu_table)
  dev = jax.devices()[0]
  return {
      "benchmark": RESULTS_NAME,
      "command": command,
      "config": dataclasses.asdict(cfg),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "device": f"{dev.platform} ({dev.device_kind}, {os.cpu_count()} CPUs, "
                f"{cli.cpu_description()})",
      "jax_version": jax.__version__,
      "device_kind": dev.device_kind,
      "packed_impl": packed,
      "gpu_table": gpu_table,
      "matmuls": matmuls,
      "convs": convs,
      "summary": summary,
      "wall_time_s": time.perf_counter() - t0,
      "note": ("Shared machine: other jobs ran concurrently, so times are noisy "
               "(minimum over repeats reduces, but does not remove, the noise)."
               if cfg.device == "cpu" else
               "Times are the minimum over repeats of one jit running the products "
               "on distinct weight matrices, divided by their number."
               + (" Interpret mode: the times mean nothing." if cfg.interpret else "")),
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
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  main()
