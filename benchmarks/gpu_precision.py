r"""What the full-precision layers' matmul precision costs and buys on a GPU (issue 16).

:func:`bnnjax.nn.layers.matmul_precision` computes every conv or matmul with a float
operand (stem, shortcuts, classifier, BWN's input) at ``HIGHEST`` in inference, so
that the eval-mode and the packed model, compiled as different programs, round alike;
±1 products keep ``DEFAULT``. On Hopper ``DEFAULT`` is TF32 for float32. For each of
the two precisions of the float layers (the train steps at
``config.train_float_precision``, the inference programs traced in
:func:`bnnjax.nn.layers.float_precision`), on the Bi-Real ResNet-18 (``--method``) at
``--image_size`` with random weights and N(0, 1) images, this measures in one run:

* the train step of the binary network and of its float twin (``method=fp``) at
  ``--batch``: what the precision costs;
* packed against eval-mode logits at batch 1 and ``--eval_batch``: the largest
  |difference| and the argmax agreement (what the precision buys);
* eval mode against itself: the same images as one batch and as two halves, i.e. the
  same model's float layers in two programs (a GPU picks conv algorithms per shape).
  Where these differ as much as packed and eval mode do, the packed model's
  disagreement comes from the float layers' rounding flipping the signs of values
  near 0, not from the binary layers;
* the packed model with its arrays passed as an argument instead of compiled in as
  constants (:func:`bnnjax.packed.inference_fn`'s ``constants``): with constants XLA
  folds what depends on the weights alone (batch norm's ``rsqrt``) at compile time on
  the host, which may round otherwise than the device's ``rsqrt`` in eval mode;
* per binary layer, how many of the signs it takes differ between the eval-mode and
  the packed model at ``--eval_batch`` (:func:`sign_flips`), and the largest |input|
  among them: flips of values within float rounding of 0 are rounding; larger ones
  would be a bug.

and profiles, at the first precision, of the binary train step and of eval-mode and
packed inference at ``--eval_batch``: the device's kernels by total time
(``jax.profiler``'s Perfetto trace).

Usage (on a GPU; ``benchmarks/gpu_check.sh`` runs it)::

  python -m benchmarks.gpu_precision --out=benchmarks/results

writes ``gpu_precision_<platform>.md`` / ``.json`` to ``--out``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import glob
import gzip
import json
import os
import sys
import tempfile
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import cli
from benchmarks import train_speed
from bnnjax import nn
from bnnjax import packed
from bnnjax.nn import layers

RESULTS_NAME = "gpu_precision"
PRECISIONS = ("highest", "default")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
  """Settings of one run (every field is a flag).

  Attributes:
    precisions: comma-separated precisions of the float layers to compare
      (``highest``: bnnjax's choice; ``default``: the platform's, TF32 on Hopper).
    method: quantization method of the binary convs.
    image_size, channels, classes, width: the network's geometry.
    batch: training batch.
    eval_batch: the batched-inference size (even: it is also split in halves).
    repeats, warmup: timed and untimed train steps.
    profile_steps: calls profiled, of the train step and of each inference (0: no
      profiles).
    seed: PRNG seed.
  """

  precisions: str = "highest,default"
  method: str = "xnor"
  image_size: int = 224
  channels: int = 3
  classes: int = 1000
  width: int = 64
  batch: int = 256
  eval_batch: int = 64
  repeats: int = 10
  warmup: int = 3
  profile_steps: int = 3
  seed: int = 0

  def __post_init__(self):
    names = self.precisions.split(",")
    if not all(names) or set(names) - set(PRECISIONS):
      raise ValueError(f"--precisions={self.precisions!r}; allowed values are "
                       f"comma-separated {list(PRECISIONS)}.")
    if self.eval_batch < 2 or self.eval_batch % 2:
      raise ValueError(f"--eval_batch={self.eval_batch}; allowed values are even "
                       "numbers >= 2 (the batch is also run as two halves).")
    if min(self.batch, self.repeats, self.warmup, self.image_size, self.width) < 1:
      raise ValueError("--batch, --repeats, --warmup, --image_size and --width must be "
                       ">= 1.")
    train_speed_config(self)  # validates the rest (method, channels, classes)


def train_speed_config(cfg: Config, precision: str = "auto") -> train_speed.Config:
  """The benchmark's network for :mod:`benchmarks.train_speed`, its train steps at
  ``config.train_float_precision=precision``."""
  return train_speed.Config(
      batch=cfg.batch, repeats=cfg.repeats, warmup=cfg.warmup, width=cfg.width,
      image_size=cfg.image_size, channels=cfg.channels, classes=cfg.classes,
      eval_batch=cfg.eval_batch, method=cfg.method, also_methods="", backends="float",
      train_float_precision=precision, seed=cfg.seed)


def _compare(a: np.ndarray, b: np.ndarray) -> dict:
  return {"max_abs_diff": float(np.max(np.abs(a - b))),
          "argmax_agreement": float(np.mean(np.argmax(a, -1) == np.argmax(b, -1))),
          "equal": bool(np.array_equal(a, b))}


@contextlib.contextmanager
def _recording_binary_inputs(record: list):
  """Within this block, every binary-input conv or dense layer, eval-mode
  (``nn.QuantConv``/``nn.QuantDense``) or packed (``PackedConv``/``PackedDense``),
  appends the float input it takes the signs of to ``record``, in call order."""
  classes = (nn.QuantConv, nn.QuantDense, packed.PackedConv, packed.PackedDense)
  originals = {cls: cls.__call__ for cls in classes}

  def wrap(call):
    def recorded(self, x, *args, **kwargs):
      if self.spec.binary_input:
        record.append(x)
      return call(self, x, *args, **kwargs)
    return recorded
  for cls in classes:
    cls.__call__ = wrap(originals[cls])
  try:
    yield
  finally:
    for cls, call in originals.items():
      cls.__call__ = call


def binary_inputs(model: nnx.Module, x) -> list[np.ndarray]:
  """The float inputs of ``model``'s binary-input layers on ``x`` (eval mode), from
  one jit that also returns them (so they are materialised, which may change how XLA
  fuses the ops around them)."""
  graphdef, state = nnx.split(model)

  def run(state, x):
    record = []
    with _recording_binary_inputs(record):
      nnx.merge(graphdef, state)(x, train=False)
    return record
  return [np.asarray(a) for a in jax.jit(run)(state, x)]


def sign_flips(eval_model: nnx.Module, packed_model: nnx.Module, x) -> list[dict]:
  """Per binary layer (call order): the signs (``x >= 0``) its input takes that differ
  between the eval-mode and the packed model, how many inputs it has, the largest
  |input| among the flipped ones and the largest |difference| of the inputs."""
  rows = []
  for a, b in zip(binary_inputs(eval_model, x), binary_inputs(packed_model, x),
                  strict=True):
    flipped = (a >= 0) != (b >= 0)
    rows.append({"flips": int(flipped.sum()), "inputs": int(a.size),
                 "max_abs_flipped": float(np.max(np.abs(a[flipped]), initial=0.0)),
                 "max_abs_diff": float(np.max(np.abs(a - b)))})
  return rows


def agreement(ts: train_speed.Config) -> dict:
  """Packed against eval mode at batch 1 and ``eval_batch`` (the packed model's arrays
  compiled in as constants, and passed as an argument), eval mode as one batch
  against eval mode as two halves (same model, two programs), and the sign flips per
  binary layer at ``eval_batch``."""
  setup = train_speed._set_up(ts, train_speed._config(ts, ts.method, "float"))
  model = nnx.merge(setup.graphdef, setup.state.params, setup.state.rest)
  eval_fn = packed.inference_fn(model)
  packed_model = packed.pack_model(model)
  packed_fn = packed.inference_fn(packed_model)
  packed_args_fn = packed.inference_fn(packed_model, constants=False)
  x, _ = train_speed._data(ts, ts.eval_batch)
  half = ts.eval_batch // 2
  whole = np.asarray(eval_fn(x))
  halves = np.concatenate([np.asarray(eval_fn(x[:half])), np.asarray(eval_fn(x[half:]))])
  out = {
      f"packed_vs_eval_b{ts.eval_batch}": _compare(np.asarray(packed_fn(x)), whole),
      f"packed_args_vs_eval_b{ts.eval_batch}": _compare(np.asarray(packed_args_fn(x)),
                                                        whole),
      "packed_vs_eval_b1": _compare(np.asarray(packed_fn(x[:1])),
                                    np.asarray(eval_fn(x[:1]))),
      f"eval_b{ts.eval_batch}_vs_eval_halves": _compare(halves, whole),
      f"eval_b1_vs_eval_b{ts.eval_batch}": _compare(np.asarray(eval_fn(x[:1])),
                                                    whole[:1]),
  }
  for k, v in out.items():
    print(f"  {k}: max |diff| {v['max_abs_diff']:.3g}, argmax agreement "
          f"{v['argmax_agreement']:.0%}", file=sys.stderr, flush=True)
  out["sign_flips"] = sign_flips(model, packed_model, x)
  print("  sign flips per binary layer: " + ", ".join(
      f"{r['flips']} (|x| <= {r['max_abs_flipped']:.2g})" for r in out["sign_flips"]),
      file=sys.stderr, flush=True)
  return out


def _process_names(trace: dict) -> dict:
  """``{pid: name}`` of the trace's processes (its ``process_name`` metadata)."""
  return {e["pid"]: e.get("args", {}).get("name", "") for e in trace["traceEvents"]
          if e.get("ph") == "M" and e.get("name") == "process_name"}


def _device_events(trace: dict) -> list[dict]:
  """Complete events (``ph == "X"``) of the trace's device processes (names with
  ``GPU`` or ``TPU``; every process when none has such a name, e.g. on a CPU)."""
  device = {pid for pid, n in _process_names(trace).items() if "GPU" in n or "TPU" in n}
  return [e for e in trace["traceEvents"] if e.get("ph") == "X" and "dur" in e
          and (not device or e.get("pid") in device)]


def profile(call, steps: int, top: int = 25) -> dict:
  """The device's kernels over ``steps`` calls of ``call`` (after one untimed call),
  by total time: ``{"kernels": [(name, ms per step, count per step)], "total_ms"}``."""
  jax.block_until_ready(call())
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d, create_perfetto_trace=True):
      for _ in range(steps):
        jax.block_until_ready(call())
    paths = glob.glob(os.path.join(d, "**", "perfetto_trace.json.gz"), recursive=True)
    if not paths:
      return {"kernels": [], "total_ms": 0.0, "error": "no perfetto trace written"}
    with gzip.open(paths[0], "rt") as f:
      trace = json.load(f)
  total, count = collections.Counter(), collections.Counter()
  for e in _device_events(trace):
    total[e["name"]] += e["dur"] / 1e3 / steps
    count[e["name"]] += 1 / steps
  kernels = [(name, ms, count[name]) for name, ms in total.most_common(top)]
  return {"kernels": kernels, "total_ms": float(sum(total.values())),
          "processes": sorted(set(_process_names(trace).values()))}


def run_benchmark(cfg: Config, command: str = "") -> dict:
  ts = train_speed_config(cfg)
  rows = {}
  for name in cfg.precisions.split(","):
    print(f"float layers at {name}:", file=sys.stderr, flush=True)
    tsp = train_speed_config(cfg, name)  # the train steps' precision
    rows[name] = {"binary_train": train_speed.time_training(tsp, cfg.method, "float"),
                  "fp_train": train_speed.time_training(tsp, "fp", "float")}
    with layers.float_precision(name):  # the inference programs' precision
      rows[name].update(agreement(ts))
  profiles = {}
  if cfg.profile_steps:
    first = cfg.precisions.split(",")[0]
    with layers.float_precision(first):
      call, _ = train_speed.train_step_call(train_speed_config(cfg, first),
                                            cfg.method, "float")
      profiles["binary train step"] = profile(call, cfg.profile_steps)
      setup = train_speed._set_up(ts, train_speed._config(ts, ts.method, "float"))
      model = nnx.merge(setup.graphdef, setup.state.params, setup.state.rest)
      x, _ = train_speed._data(ts, ts.eval_batch)
      for name, m in ((f"eval-mode inference, batch {ts.eval_batch}", model),
                      (f"packed inference, batch {ts.eval_batch}",
                       packed.pack_model(model))):
        fn = packed.inference_fn(m)
        profiles[name] = profile(lambda fn=fn: fn(x), cfg.profile_steps, top=15)
    for p in profiles.values():
      p["precision"] = first
  return {"benchmark": RESULTS_NAME, "command": command,
          "config": dataclasses.asdict(cfg), "platform": jax.default_backend(),
          "devices": [d.device_kind for d in jax.devices()],
          "date": datetime.date.today().isoformat(), "rows": rows,
          "profiles": profiles}


def format_markdown(r: dict) -> str:
  cfg = r["config"]
  e = cfg["eval_batch"]
  lines = [f"# Float layers' precision on {', '.join(sorted(set(r['devices'])))} "
           f"({r['date']})", "", f"`{r['command']}`", "",
           f"ResNet-18, `{cfg['method']}` binary convs, {cfg['image_size']}×"
           f"{cfg['image_size']}×{cfg['channels']}, {cfg['classes']} classes, width "
           f"{cfg['width']}, random weights, N(0, 1) images. Train steps: median of "
           f"{cfg['repeats']}, batch {cfg['batch']}. Agreement: largest |logit "
           "difference| (argmax agreement).", "",
           "| float layers | binary train ms (img/s) | float twin ms (img/s) | packed vs "
           f"eval b1 | packed vs eval b{e} | packed (arrays as argument) vs eval b{e} | "
           f"eval b{e} vs two halves | eval b1 vs row of b{e} | sign flips b{e} (largest "
           "flipped |x|) |", "|---|---|---|---|---|---|---|---|---|"]
  for name, row in r["rows"].items():
    def agree(key):
      if key not in row:  # a measurement this file's run did not make
        return "–"
      v = row[key]
      return f"{v['max_abs_diff']:.3g} ({v['argmax_agreement']:.0%})"
    b, f = row["binary_train"], row["fp_train"]
    flips = row.get("sign_flips", [])
    flipped = (f"{sum(r['flips'] for r in flips)} of "
               f"{sum(r['inputs'] for r in flips)} "
               f"({max((r['max_abs_flipped'] for r in flips), default=0.0):.2g})")
    lines.append(f"| `{name}` | {b['median_ms']:.1f} ({b['img_per_s']:.0f}) | "
                 f"{f['median_ms']:.1f} ({f['img_per_s']:.0f}) | "
                 f"{agree('packed_vs_eval_b1')} | {agree(f'packed_vs_eval_b{e}')} | "
                 f"{agree(f'packed_args_vs_eval_b{e}')} | "
                 f"{agree(f'eval_b{e}_vs_eval_halves')} | "
                 f"{agree(f'eval_b1_vs_eval_b{e}')} | {flipped} |")
  profiles = r.get("profiles") or ({"binary train step": r["profile"]}
                                    if r.get("profile") else {})
  for what, prof in profiles.items():
    if not prof.get("kernels"):
      lines += ["", f"Profile of the {what}: "
                f"{prof.get('error', 'no device kernels in the trace')}."]
      continue
    lines += ["", f"Device kernels of the {what} (float layers at "
              f"`{prof['precision']}`), {prof['total_ms']:.2f} ms of kernel time per "
              f"call, top {len(prof['kernels'])}:", "", "| kernel | ms/call | count |",
              "|---|---|---|"]
    for name, ms, count in prof["kernels"]:
      lines.append(f"| `{name[:90]}` | {ms:.3f} | {count:.0f} |")
  return "\n".join(lines) + "\n"


def write_results(results: dict, out_dir: str) -> tuple[str, str]:
  stem = os.path.join(out_dir, f"{RESULTS_NAME}_{results['platform']}")
  return cli.write_results(results, stem, format_markdown)


def parse_args(argv: Sequence[str] | None = None) -> tuple[Config, str]:
  return cli.parse_args(Config, argv, description=__doc__.split("\n")[0],
                        out_help="directory for gpu_precision_<platform>.{md,json}")


def main(argv: Sequence[str] | None = None) -> dict:
  return cli.main("benchmarks.gpu_precision", argv, parse=parse_args,
                  run_benchmark=run_benchmark, write=write_results,
                  format_markdown=format_markdown)


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  main()
