r"""How close a CPU train step is to what this machine's cores allow.

A speed target for a training step is only reachable above two floors, both measured
here in one run on the machine at hand:

* **matmul floor** = the step's float operations (XLA's ``cost_analysis`` of the
  compiled step, which counts a product's multiply-adds as 2 and an elementwise op
  as 1) ÷ the rate of XLA:CPU's float32 matmul on a large square product
  (``--gemm``², all cores): the time of the step's arithmetic at the best matmul
  rate, with the step's other work taken as free;
* **core floor** = the step's wall time on one core ÷ the number of cores: the step
  with perfect parallel scaling. The one-core step runs in a child process whose CPU
  affinity is one core (XLA:CPU sizes its thread pool from the affinity).

and, with ``--profile_steps``, the step's XLA thunks with the matrix products
(``ynn_fusion``, ``dot``, ``convolution``) apart: their summed thunk time and the rate
it implies, against the one-core matmul rate, says whether the products themselves
leave headroom.

Workloads (``--workloads``):

``readme``
  the README's first command's train step (``configs/bonn_resnet18.py``: BONN
  ResNet-18, width 16, batch 128, 28×28×1 MNIST-shaped) and its step count; the
  command's floor is ``steps × core floor`` plus its measured compilation.
``peer``
  the Larq peer's network as ``benchmarks.train_speed`` times it (Bi-Real ResNet-18,
  width 64, ImageNet stem, batch 64, ``--method`` on the ``auto`` backend).

``--width`` / ``--batch`` (0: the workload's own) shrink the models for tests. Random
data, no dataset is read.

Usage::

  python -m benchmarks.train_roofline [--workloads=readme,peer] [--profile_steps=3]

writes ``train_roofline_<platform>.md`` / ``.json`` to ``--out``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import cli
from benchmarks import gpu_precision
from benchmarks import train_speed
from bnnjax import data as data_lib
from bnnjax import methods

RESULTS_NAME = "train_roofline"
WORKLOADS = ("readme", "peer")
# XLA:CPU thunks that are matrix products (YNNPACK fusions, dots, convolutions).
MATMUL_THUNK = re.compile(r"^(ynn_fusion|xnn_fusion|dot|convolution|conv_general)")
# Profiler events that are the runtime's bookkeeping, not a computation of the step.
RUNTIME_EVENT = re.compile(r"^\$|Thunk|Pjit|::|^Handle inputs$|^ParseArguments$|^end: ")


@dataclasses.dataclass
class Config:
  """Flags of ``python -m benchmarks.train_roofline``.

  Attributes:
    workloads: comma-separated, of ``readme`` and ``peer``.
    method: the ``peer`` workload's binary method (``bnnjax.methods``).
    width: the models' width, 0 for each workload's own (16 and 64).
    batch: the training batch, 0 for each workload's own (128 and 64).
    repeats: timed steps (median), after ``warmup`` untimed ones.
    warmup: untimed steps (the first compiles).
    gemm: the side of the square float32 product that measures the matmul rate.
    profile_steps: steps profiled per workload for the thunk breakdown (0: none).
    one_core: also time every step and the product on one core (a child process).
  """

  workloads: str = "readme,peer"
  method: str = "xnor"
  width: int = 0
  batch: int = 0
  repeats: int = 10
  warmup: int = 3
  gemm: int = 2048
  profile_steps: int = 3
  one_core: bool = True

  def __post_init__(self):
    names = self.workloads.split(",")
    if not all(names) or set(names) - set(WORKLOADS):
      raise ValueError(f"--workloads={self.workloads!r}; allowed values are "
                       f"comma-separated {list(WORKLOADS)}.")
    try:
      methods.parse(self.method)
    except ValueError as e:
      raise ValueError(f"--method={self.method!r}: {e}") from None
    for name in ("repeats", "warmup", "gemm"):
      if getattr(self, name) < 1:
        raise ValueError(f"--{name}={getattr(self, name)}; allowed values are >= 1.")
    for name in ("width", "batch", "profile_steps"):
      if getattr(self, name) < 0:
        raise ValueError(f"--{name}={getattr(self, name)}; allowed values are >= 0 "
                         "(0: " + ("none" if name == "profile_steps" else
                                   "the workload's own") + ").")


def workload(cfg: Config, name: str):
  """``(config, info)`` of workload ``name``: the trainer's config and the (synthetic)
  data's geometry, whose ``num_train`` gives the README command's step count."""
  if name == "readme":
    from configs import bonn_resnet18
    config = bonn_resnet18.get_config()
    info = data_lib.DatasetInfo(name="synthetic", num_classes=10, image_shape=(28, 28, 1),
                                num_train=60000, num_test=10000, splits=("train", "test"))
  else:
    ts = train_speed.Config(method=cfg.method)
    config = train_speed._config(ts, cfg.method, "auto")
    info = train_speed._info(ts)
  if cfg.width:
    config.model_kwargs.width = cfg.width
  if cfg.batch:
    config.batch_size = cfg.batch
  return config, info


def gemm_rate(n: int, repeats: int = 5) -> float:
  """GFLOP/s of one jit-compiled ``n×n @ n×n`` float32 product (median of
  ``repeats`` after a warm-up)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(jnp.matmul)
  jax.block_until_ready(f(a, b))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(f(a, b))
    times.append(time.perf_counter() - t0)
  return 2 * n ** 3 / statistics.median(times) / 1e9


def time_step(call, repeats: int, warmup: int) -> dict:
  """Wall and CPU time of ``call`` (one train step, forced to the host): the median
  wall ms of ``repeats`` calls, and the process's user + system CPU ms per call over
  them (``os.times``), after ``warmup`` untimed calls (the first one's seconds are
  ``first_call_s``: compilation)."""
  first = train_speed._warm_up(call, warmup)
  walls = []
  t0 = os.times()
  for _ in range(repeats):
    walls.append(train_speed._timed_call(call))
  t1 = os.times()
  cpu = (t1.user - t0.user) + (t1.system - t0.system)
  return {"wall_ms": 1e3 * statistics.median(walls), "cpu_ms": 1e3 * cpu / repeats,
          "first_call_s": first}


def step_gflop(lower) -> float:
  """The step's float operations in GFLOP: ``cost_analysis()['flops']`` of its lowered
  program (before XLA's optimisations, which leave the products as they are; no
  second compilation)."""
  cost = lower().cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
    cost = cost[0]
  return float(cost["flops"]) / 1e9


def thunk_split(call, steps: int) -> dict:
  """The step's XLA thunks over ``steps`` profiled calls: summed thunk ms per step of
  the matrix products (:data:`MATMUL_THUNK`) and of the rest, and the five costliest
  other thunk kinds (name without its number)."""
  p = gpu_precision.profile(call, steps, top=100000)
  matmul = other = 0.0
  kinds = collections.Counter()
  for name, ms, _ in p["kernels"]:
    if RUNTIME_EVENT.search(name):
      continue
    if MATMUL_THUNK.match(name):
      matmul += ms
    else:
      other += ms
      kinds[re.sub(r"[.\d]+$", "", name)] += ms
  return {"matmul_thunk_ms": matmul, "other_thunk_ms": other,
          "top_other": [[k, ms] for k, ms in kinds.most_common(5)]}


def floors(gflop: float, cores: int, gemm_all: float, one_core_ms: float | None) -> dict:
  """The step's two floors in ms (see the module docstring): ``matmul_floor_ms =
  gflop / gemm_all`` (GFLOP/s on all cores) and ``core_floor_ms = one_core_ms /
  cores`` (None without a one-core time)."""
  return {"matmul_floor_ms": 1e3 * gflop / gemm_all,
          "core_floor_ms": None if one_core_ms is None else one_core_ms / cores}


def measure(cfg: Config, name: str) -> dict:
  """One workload's step in this process: GFLOP, wall and CPU time, the step count of
  its run, and (``--profile_steps``) its thunk split."""
  config, info = workload(cfg, name)
  call, lower, setup = train_speed.config_step_call(config, info)
  r = {"batch": config.batch_size, "width": config.model_kwargs.width,
       "method": config.method, **time_step(call, cfg.repeats, cfg.warmup)}
  r["gflop"] = step_gflop(lower)
  r["run_steps"] = setup.total_steps
  if cfg.profile_steps:
    r.update(thunk_split(call, cfg.profile_steps))
  return r


def _one_core_child(cfg_json: str) -> None:
  """The child's side of :func:`one_core`: times every workload's step and the
  product on the one core it is pinned to; prints one JSON line."""
  cfg = Config(**json.loads(cfg_json))
  out = {"gemm_gflops": gemm_rate(cfg.gemm)}
  for name in cfg.workloads.split(","):
    config, info = workload(cfg, name)
    call, _, _ = train_speed.config_step_call(config, info)
    out[name] = time_step(call, cfg.repeats, cfg.warmup)
  print("ONE_CORE " + json.dumps(out), flush=True)


def cores() -> int:
  """The cores this process may run on (its CPU affinity where the OS has one)."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def one_core(cfg: Config) -> dict:
  """The steps and the product timed in a child process pinned to one core (the
  first this process may run on), as :func:`_one_core_child` prints them; ``{}``
  where the OS cannot pin a process (no ``os.sched_setaffinity``: macOS)."""
  if not hasattr(os, "sched_setaffinity"):
    print("train_roofline: this OS cannot pin a process to one core; the core floor "
          "is left out", file=sys.stderr)
    return {}
  core = min(os.sched_getaffinity(0))
  child_cfg = dataclasses.replace(cfg, profile_steps=0, one_core=False)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  # pinned before JAX is imported, so XLA:CPU sizes its thread pool for one core
  code = (f"import os; os.sched_setaffinity(0, {{{core}}}); "
          "from benchmarks import train_roofline as t; "
          f"t._one_core_child({json.dumps(json.dumps(dataclasses.asdict(child_cfg)))})")
  # the child inherits this process's environment (its allocator tunables included),
  # so both steps are timed under the same malloc
  proc = subprocess.run([sys.executable, "-c", code], cwd=root, text=True,
                        capture_output=True)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("ONE_CORE ")]
  if proc.returncode or not lines:
    raise RuntimeError(f"the one-core child failed (exit {proc.returncode}):\n"
                       f"{proc.stderr[-3000:]}")
  return json.loads(lines[-1][len("ONE_CORE "):])


def run_benchmark(cfg: Config, command: str = "") -> dict:
  n_cores = cores()
  rows = {name: measure(cfg, name) for name in cfg.workloads.split(",")}
  gemm_all = gemm_rate(cfg.gemm)
  single = one_core(cfg) if cfg.one_core else {}
  for name, r in rows.items():
    if single:
      r["one_core_wall_ms"] = single[name]["wall_ms"]
      r["scaling"] = r["one_core_wall_ms"] / r["wall_ms"]
    r.update(floors(r["gflop"], n_cores, gemm_all, r.get("one_core_wall_ms")))
    if "matmul_thunk_ms" in r:
      r["matmul_thunk_gflops"] = r["gflop"] / (r["matmul_thunk_ms"] / 1e3)
  return {"benchmark": RESULTS_NAME, "command": command,
          "config": dataclasses.asdict(cfg), "platform": jax.default_backend(),
          "machine": cli.cpu_description(), "cores": n_cores,
          "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
          "date": datetime.date.today().isoformat(),
          "gemm_gflops": gemm_all, "gemm_gflops_one_core": single.get("gemm_gflops"),
          "rows": rows}


def _f(v, fmt="{:.1f}"):
  return "–" if v is None else fmt.format(v)


def format_markdown(r: dict) -> str:
  cfg, n_cores = r["config"], r["cores"]
  lines = [f"# How close the train step is to this machine's floors ({r['platform']}, "
           f"{n_cores} cores, {r['date']})", "",
           f"Machine: {r['machine']}; `GLIBC_TUNABLES={r['glibc_tunables']}`.", "",
           f"`{r['command']}`", "",
           f"float32 matmul, {cfg['gemm']}² (GFLOP/s): {r['gemm_gflops']:.0f} on "
           f"{n_cores} cores, {_f(r['gemm_gflops_one_core'], '{:.0f}')} on one.", "",
           "Floors: *matmul* = the step's GFLOP ÷ the all-core matmul rate; *core* = "
           "the one-core step ÷ the cores (perfect scaling). Median of "
           f"{cfg['repeats']} steps; CPU = user + system time per step.", "",
           "| workload | GFLOP/step | step ms | CPU ms/step | one-core step ms | "
           "scaling | matmul floor ms | core floor ms | step ÷ core floor |",
           "|---|---|---|---|---|---|---|---|---|"]
  for name, w in r["rows"].items():
    label = f"`{name}` ({w['method']}, width {w['width']}, batch {w['batch']})"
    over = (None if w["core_floor_ms"] is None else w["wall_ms"] / w["core_floor_ms"])
    lines.append(
        f"| {label} | {w['gflop']:.2f} | {w['wall_ms']:.1f} | {w['cpu_ms']:.1f} | "
        f"{_f(w.get('one_core_wall_ms'))} | {_f(w.get('scaling'), '{:.2f}×')} | "
        f"{w['matmul_floor_ms']:.1f} | {_f(w['core_floor_ms'])} | "
        f"{_f(over, '{:.2f}×')} |")
  prof = {n: w for n, w in r["rows"].items() if "matmul_thunk_ms" in w}
  if prof:
    lines += ["", f"Thunks per step (XLA profiler, {cfg['profile_steps']} steps; summed "
              "over threads):", "",
              "| workload | matrix products ms | their GFLOP/s | other thunks ms | "
              "costliest other |", "|---|---|---|---|---|"]
    for name, w in prof.items():
      top = ", ".join(f"{k} {ms:.1f}" for k, ms in w["top_other"])
      lines.append(f"| `{name}` | {w['matmul_thunk_ms']:.1f} | "
                   f"{w['matmul_thunk_gflops']:.0f} | {w['other_thunk_ms']:.1f} | "
                   f"{top} |")
    lines += ["", "A product rate near the one-core matmul rate means the products "
              "already run at that rate on each thread: what is left is the other "
              "thunks and the parallel scaling."]
  if "readme" in r["rows"]:
    w = r["rows"]["readme"]
    floor = w["core_floor_ms"] if w["core_floor_ms"] is not None else w["matmul_floor_ms"]
    kind = "core" if w["core_floor_ms"] is not None else "matmul"
    lines += ["", f"README command ({w['run_steps']} steps): at the measured step "
              f"{w['run_steps'] * w['wall_ms'] / 1e3:.0f} s of steps; at the {kind} "
              f"floor {w['run_steps'] * floor / 1e3:.0f} s, plus compilation "
              f"({w['first_call_s']:.0f} s here) and the test pass."]
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
  return cli.config_main("benchmarks.train_roofline", Config, argv, doc=__doc__,
                         results_name=RESULTS_NAME, run_benchmark=run_benchmark,
                         format_markdown=format_markdown)


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  main()
