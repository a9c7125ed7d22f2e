r"""Training and inference speed of the Bi-Real ResNet-18, against Larq and LCE.

The network is the one of ``../shared/peers/larq_peer.py``: 28×28×1 input, 10 classes,
ImageNet stem (7×7/2 conv, BN, 3×3/2 max-pool), width 64, Bi-Real units with binary
3×3 convs (``config.method``, default ``xnor``), full-precision downsampling shortcuts,
Adam 1e-3. Timed the way the peer harness times (its README): fixed random N(0, 1)
images and random labels reused every step, untimed warm-up calls (compilation reported
apart), each call timed alone and forced to the host, median of ``--repeats``.

Rows, per binary compute backend (``config.binary_compute``: ``float``, ``packed``,
``auto``):

* ``train``: the trainer's own jit-compiled train step (:func:`bnnjax.train.trainer.
  make_train_step`) at ``--batch``, and the float twin (``method=fp``);
* ``eval_b1`` / ``eval_bN``: the trainer's eval step (:class:`bnnjax.train.trainer.
  EvalStep`, jit) at batch 1 and ``--batch``: the eval-mode model for ``float``, the
  packed model for ``packed`` and, on CPU, ``auto`` (kernels packed once per
  evaluation by ``prepare``, not timed per batch);
* ``packed_b1`` / ``packed_bN``: the packed export (:func:`bnnjax.packed.pack_model`)
  at batch 1 and ``--batch``.

and the train step of each of ``--also_methods`` on ``auto`` (when timed, else the
first of ``--backends``): what each method's scales and loss terms cost, next to
Larq's scale-free ``ste_sign`` network.

``--peers`` also runs ``larq_peer.py`` and ``lce_peer.py`` (``--larq_python``, the venv
``../shared/peers/setup_larq_venv.sh`` builds) and alternates rounds: bnnjax, Larq,
LCE, bnnjax, ... so both see the same machine state; ratios come from the medians
over rounds. ``--readme_command`` also times the README's first command end to end
(install excluded) in a fresh workdir.

Usage::

  python -m benchmarks.train_speed --peers --rounds=2 --readme_command

writes ``train_speed_<platform>.md`` / ``.json`` to ``--out``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import cli
from bnnjax import data as data_lib
from bnnjax import methods
from bnnjax import nn
from bnnjax import packed
from bnnjax.train import parallel
from bnnjax.train import trainer
from configs import common

RESULTS_NAME = "train_speed"
BACKENDS = ("float", "packed", "auto")
PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                     "peers")
README_COMMAND = [sys.executable, "-m", "experiments.run",
                  "--config=configs/bonn_resnet18.py"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
  """Settings of one run (every field is a flag).

  Attributes:
    batch: training and batched-inference size.
    repeats: timed calls per measurement (median reported).
    warmup: untimed calls before timing (the first one compiles).
    width: ResNet-18 width (64: the peer's network).
    image_size: height and width of the synthetic images (28: the peer's; 224 for
      ImageNet's geometry on a GPU).
    channels: their channels (1: the peer's; 3 for ImageNet).
    classes: the number of classes (10: the peer's; 1000 for ImageNet).
    eval_batch: the batched-inference size (0: ``batch``).
    compute_dtypes: comma-separated ``binary_compute_dtype`` values the binary
      training step is timed at (the first gives the table's ``train`` column; e.g.
      ``float32,bfloat16`` on a GPU).
    train_float_precision: ``config.train_float_precision`` of the train steps
      timed (``auto``: the platform's default precision).
    method: quantization method of the binary convs (``bonn`` with its loss terms,
      the kernel loss decoupled, as ``configs/bonn_resnet18.py`` trains it).
    also_methods: further methods whose binary training step is timed, on ``auto``
      if ``--backends`` has it, else on its first, comma-separated ('' for none).
      Larq's peer binarises with a bare ``ste_sign`` and no scale; ``xnor`` adds α
      and the activation map K, ``xnorpp_1`` one learned Γ per output channel,
      ``bonn`` one scalar per layer and its two loss terms.
    backends: comma-separated ``binary_compute`` backends to time.
    rounds: alternated rounds of (bnnjax, Larq, LCE).
    peers: also run the Larq and LCE peers.
    larq_python: the Python of the Larq venv.
    readme_command: also time the README's first command (minutes).
    seed: PRNG seed.
  """

  batch: int = 64
  repeats: int = 20
  warmup: int = 5
  width: int = 64
  image_size: int = 28
  channels: int = 1
  classes: int = 10
  eval_batch: int = 0
  compute_dtypes: str = "auto"
  train_float_precision: str = "auto"
  method: str = "xnor"
  also_methods: str = "xnorpp_1,bonn"
  backends: str = "float,packed,auto"
  rounds: int = 1
  peers: bool = False
  larq_python: str = "/tmp/venv-larq/bin/python"
  readme_command: bool = False
  seed: int = 0

  def __post_init__(self):
    for name in ("batch", "repeats", "width", "rounds", "image_size", "channels"):
      if getattr(self, name) < 1:
        raise ValueError(f"--{name}={getattr(self, name)}; allowed values are >= 1.")
    if self.classes < 2:
      raise ValueError(f"--classes={self.classes}; allowed values are >= 2.")
    if self.eval_batch < 0:
      raise ValueError(f"--eval_batch={self.eval_batch}; allowed values are >= 1, or 0 "
                       "for --batch.")
    named = [("method", self.method)] + [("also_methods", m)
                                         for m in self.also_methods.split(",") if m]
    for flag, m in named:
      try:
        methods.parse(m)
      except ValueError as e:
        raise ValueError(f"--{flag}={getattr(self, flag)!r}: {e}") from None
    peer = (self.image_size, self.channels, self.classes) == (28, 1, 10)
    if self.peers and not (peer and self.eval_batch in (0, self.batch)):
      raise ValueError("--peers times the peers' network (28×28×1, 10 classes, one "
                       "batch size): allowed only with --image_size=28 --channels=1 "
                       "--classes=10 and --eval_batch=0.")
    dtypes = self.compute_dtypes.split(",")
    if not all(dtypes) or set(dtypes) - set(nn.COMPUTE_DTYPES):
      raise ValueError(f"--compute_dtypes={self.compute_dtypes!r}; allowed values are "
                       f"comma-separated {list(nn.COMPUTE_DTYPES)}.")
    if self.train_float_precision not in nn.layers.FLOAT_PRECISIONS:
      raise ValueError(f"--train_float_precision={self.train_float_precision!r}; "
                       f"allowed values are {list(nn.layers.FLOAT_PRECISIONS)}.")
    unknown = set(self.backends.split(",")) - set(BACKENDS)
    if unknown:
      raise ValueError(f"--backends={self.backends!r}: {sorted(unknown)} unknown; "
                       f"allowed values are comma-separated {list(BACKENDS)}.")


def _config(cfg: Config, method: str, backend: str, dtype: str | None = None):
  c = common.base_config()
  c.update(model_name="resnet18", method=method, dataset="mnist", batch_size=cfg.batch,
           eval_batch_size=_eval_batch(cfg), optimizer="adam", lr=1e-3,
           schedule="constant", binary_compute=backend, seed=cfg.seed,
           binary_compute_dtype=dtype or cfg.compute_dtypes.split(",")[0],
           train_float_precision=cfg.train_float_precision)
  c.model_kwargs.update(width=cfg.width, stem="imagenet")
  if common.is_bonn(method):  # BONN's layers with its loss terms, as its config trains
    common.add_bonn(c, w_lr=c.lr / 10, kernel_decoupled=True)
  return c


def _eval_batch(cfg: Config) -> int:
  return cfg.eval_batch or cfg.batch


def _info(cfg: Config) -> data_lib.DatasetInfo:
  """The synthetic data's geometry (no dataset is read: ``trainer.set_up(info=)``)."""
  shape = (cfg.image_size, cfg.image_size, cfg.channels)
  return data_lib.DatasetInfo(name="synthetic", num_classes=cfg.classes,
                              image_shape=shape, num_train=1000 * cfg.batch,
                              num_test=cfg.batch, splits=("train", "test"))


def _set_up(cfg: Config, config):
  return trainer.set_up(config, info=_info(cfg))


def _warm_up(fn, warmup: int) -> float:
  """Calls ``fn`` ``warmup`` times (at least once: the first call compiles) and
  returns the first call's seconds."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - t0
  for _ in range(max(warmup - 1, 0)):
    jax.block_until_ready(fn())
  return first


def _timed_call(fn) -> float:
  """Seconds of one call of ``fn``, its outputs forced to the host, as the peers do."""
  t0 = time.perf_counter()
  jax.tree.map(np.asarray, fn())
  return time.perf_counter() - t0


def _summary(times: list[float], first: float) -> dict:
  return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times),
          "first_call_s": first}


def _time(fn, repeats: int, warmup: int) -> dict:
  first = _warm_up(fn, warmup)
  return _summary([_timed_call(fn) for _ in range(repeats)], first)


def _progress(label: str, r: dict) -> None:
  """One line per measurement on stderr as it is made, so that a run stopped at a time
  limit (the GPU check) still shows what it had timed."""
  print(f"{label}: median {r['median_ms']:.3f} ms, first call {r['first_call_s']:.1f} s",
        file=sys.stderr, flush=True)


def random_batch(n: int, image_shape, num_classes: int, seed: int):
  """``n`` random N(0, 1) float32 images of ``image_shape`` and int32 labels below
  ``num_classes`` (numpy), the peers' kind of fixed data."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, *image_shape)).astype(np.float32)
  return x, rng.integers(0, num_classes, n).astype(np.int32)


def _data(cfg: Config, n: int):
  x, y = random_batch(n, (cfg.image_size, cfg.image_size, cfg.channels), cfg.classes,
                      cfg.seed)
  return jnp.asarray(x), jnp.asarray(y)


def config_step_call(config, info: data_lib.DatasetInfo, seed: int = 0):
  """``(call, lower, setup)`` for ``config``'s own train step (the trainer's, as
  ``experiments.run`` builds it) on one fixed batch of random N(0, 1) images of
  ``info``'s shape and random labels: ``call()`` runs the step once, carrying the
  state from call to call, and returns its total loss; ``lower()`` lowers the step
  for the current state (``lower().cost_analysis()``); ``setup`` is the trainer's
  :class:`~bnnjax.train.trainer.Setup` (``total_steps`` of a run on ``info``)."""
  setup = trainer.set_up(config, info=info)
  mesh = parallel.make_mesh()
  step = trainer.train_step_for(config, setup, mesh)  # the trainer's own step
  x, y = random_batch(config.batch_size, info.image_shape, info.num_classes, seed)
  batch = parallel.shard_batch({"image": x, "label": y}, mesh)
  holder = [parallel.replicate(setup.state, mesh)]

  def call():
    holder[0], metrics = step(holder[0], batch)
    return metrics["loss/total"]
  return call, lambda: step.lower(holder[0], batch), setup


def train_step_call(cfg: Config, method: str, backend: str, dtype: str | None = None):
  """``(call, config)``: ``call()`` runs the trainer's train step once on fixed random
  data (binary products in ``dtype``, default the first of ``--compute_dtypes``),
  carrying the state from call to call, and returns the step's total loss."""
  config = _config(cfg, method, backend, dtype)
  call, _, _ = config_step_call(config, _info(cfg), cfg.seed)
  return call, config


def time_training_steps(cfg: Config, steps: dict) -> dict:
  """The trainer's train steps ``steps`` (``{key: (method, backend, dtype)}``, see
  :func:`train_step_call`), built and warmed up first and then timed interleaved,
  one call of each in turn, ``--repeats`` times, so that every step sees the same
  machine state. Timed one after another, with the inference timings in between,
  the same program (``packed`` and ``auto`` train the peer network's convs alike)
  measured 90 and 113-119 ms in one run; interleaved in one process, 86-102 against
  88-97 ms. ``{key: {"median_ms", "min_ms", "first_call_s", "img_per_s"}}``."""
  calls, first = {}, {}
  for key, (method, backend, dtype) in steps.items():
    call, config = train_step_call(cfg, method, backend, dtype)
    first[key] = _warm_up(call, cfg.warmup)
    calls[key] = (call, f"train {method} {backend} {config.binary_compute_dtype}")
  times = {key: [] for key in calls}
  for _ in range(cfg.repeats):
    for key, (call, _) in calls.items():
      times[key].append(_timed_call(call))
  out = {}
  for key, (_, label) in calls.items():
    r = out[key] = _summary(times[key], first[key])
    r["img_per_s"] = cfg.batch / (r["median_ms"] / 1e3)
    _progress(label, r)
  return out


def time_training(cfg: Config, method: str, backend: str,
                  dtype: str | None = None) -> dict:
  """The trainer's train step on fixed random data (:func:`train_step_call`)."""
  return time_training_steps(cfg, {0: (method, backend, dtype)})[0]


def time_inference(cfg: Config, backend: str) -> dict:
  """Eval-mode steps and packed inference at batch 1 and ``batch``."""
  config = _config(cfg, cfg.method, backend)
  setup = _set_up(cfg, config)
  model = nnx.merge(setup.graphdef, setup.state.params, setup.state.rest)
  mesh = parallel.make_mesh()
  eval_step = trainer.make_eval_step(
      setup.graphdef, mesh, packed=trainer.eval_model_is_packed(config),
      params=setup.state.params, rest=setup.state.rest)
  prepared = eval_step.prepare(setup.state)
  eval_fn = packed.inference_fn(model)
  pm = packed.pack_model(model)
  packed_fn = packed.inference_fn(pm)
  out = {"eval_model_packed": eval_step.packed}
  for n in (1, _eval_batch(cfg)):
    x, y = _data(cfg, n)
    batch = parallel.shard_batch({"image": np.asarray(x), "label": np.asarray(y),
                                  "mask": np.ones((n,), np.float32)}, mesh)
    out[f"eval_b{n}"] = _time(lambda: eval_step(prepared, batch), cfg.repeats, cfg.warmup)
    _progress(f"eval b{n} {backend}", out[f"eval_b{n}"])
    out[f"packed_b{n}"] = _time(lambda: packed_fn(x), cfg.repeats, cfg.warmup)
    _progress(f"packed b{n} {backend}", out[f"packed_b{n}"])
    y_packed, y_eval = np.asarray(packed_fn(x)), np.asarray(eval_fn(x))
    out[f"packed_equals_eval_b{n}"] = bool(np.array_equal(y_packed, y_eval))
    out[f"packed_max_logit_diff_b{n}"] = float(np.max(np.abs(y_packed - y_eval)))
    out[f"packed_argmax_agree_b{n}"] = float(np.mean(
        np.argmax(y_packed, -1) == np.argmax(y_eval, -1)))
    print(f"packed vs eval b{n} {backend}: equal {out[f'packed_equals_eval_b{n}']}, "
          f"max |diff| {out[f'packed_max_logit_diff_b{n}']:.3g}, argmax agreement "
          f"{out[f'packed_argmax_agree_b{n}']:.0%}", file=sys.stderr, flush=True)
  out["packed_bytes"] = packed.nbytes(pm)
  return out


def _run_peer(cfg: Config, script: str, args: list[str]) -> dict:
  fd, path = tempfile.mkstemp(suffix=".json")
  os.close(fd)
  cmd = [cfg.larq_python, script, *args]
  if script == "larq_peer.py":
    cmd += ["--json-out", path]
  proc = subprocess.run(cmd, cwd=PEERS, capture_output=True, text=True, timeout=1800)
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def time_readme_command() -> dict:
  """The README's first command (install excluded) in a fresh workdir."""
  workdir = tempfile.mkdtemp(prefix="bnnjax_readme_")
  try:
    t0 = time.perf_counter()
    proc = subprocess.run([*README_COMMAND, f"--workdir={workdir}",
                           "--config.progress=False"], capture_output=True, text=True,
                          timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
      raise RuntimeError(f"README command failed:\n{proc.stderr[-2000:]}")
    with open(os.path.join(workdir, "results.json")) as f:
      top1 = json.load(f)["test/top1"]
    return {"wall_s": wall, "test_top1": top1,
            "command": " ".join(README_COMMAND[1:])}
  finally:
    shutil.rmtree(workdir, ignore_errors=True)


def _methods_backend(backends: list[str]) -> str:
  """The backend ``--also_methods`` are timed on: ``auto``, the default, if timed."""
  return "auto" if "auto" in backends else backends[0]


def _also_methods(cfg: Config) -> list[str]:
  return [m for m in cfg.also_methods.split(",") if m and m != cfg.method]


def _median(values):
  return statistics.median(values) if values else None


def run_benchmark(cfg: Config, command: str = "") -> dict:
  backends = cfg.backends.split(",")
  rounds = []
  for r in range(cfg.rounds):
    rnd = {"bnnjax": {}}
    dtypes = cfg.compute_dtypes.split(",")
    steps = {(backend, "train"): (cfg.method, backend, None) for backend in backends}
    steps.update({(backend, f"train_{d}"): (cfg.method, backend, d)
                  for backend in backends for d in dtypes[1:]})
    steps[("fp_train", None)] = ("fp", "float", None)
    steps.update({("methods", m): (m, _methods_backend(backends), None)
                  for m in _also_methods(cfg)})
    trained = time_training_steps(cfg, steps)
    for backend in backends:
      rnd["bnnjax"][backend] = {key: r for (be, key), r in trained.items()
                                if be == backend}
      rnd["bnnjax"][backend].update(time_inference(cfg, backend))
    rnd["bnnjax"]["fp_train"] = trained[("fp_train", None)]
    rnd["bnnjax"]["methods"] = {m: trained[("methods", m)] for m in _also_methods(cfg)}
    if cfg.peers:
      rnd["larq"] = _run_peer(cfg, "larq_peer.py", [
          "--steps", str(max(cfg.repeats, 20)), "--batch", str(cfg.batch), "--no-tob"])
      rnd["lce"] = _run_peer(cfg, "lce_peer.py", ["--steps", "300"])
    rounds.append(rnd)
    print(f"round {r + 1}/{cfg.rounds} done", flush=True)
  summary = {}
  for backend in backends:
    e = _eval_batch(cfg)
    for key in ("train", "eval_b1", f"eval_b{e}", "packed_b1", f"packed_b{e}"):
      summary[f"{backend}/{key}_ms"] = _median(
          [rnd["bnnjax"][backend][key]["median_ms"] for rnd in rounds])
  for backend in backends:
    for d in cfg.compute_dtypes.split(",")[1:]:
      summary[f"{backend}/train_{d}_ms"] = _median(
          [rnd["bnnjax"][backend][f"train_{d}"]["median_ms"] for rnd in rounds])
  summary["fp_train_ms"] = _median([rnd["bnnjax"]["fp_train"]["median_ms"]
                                    for rnd in rounds])
  for m in _also_methods(cfg):
    summary[f"{m}/train_ms"] = _median([rnd["bnnjax"]["methods"][m]["median_ms"]
                                        for rnd in rounds])
  if cfg.peers:
    summary.update(_peer_summary(rounds, cfg))
    for backend in backends:
      _ratios(summary, backend, cfg.batch)
    for m in _also_methods(cfg):
      summary[f"{m}/train_speedup_vs_larq"] = (summary["larq/train_ms"]
                                               / summary[f"{m}/train_ms"])
  if cfg.readme_command:
    summary["readme_command"] = time_readme_command()
  return {"benchmark": RESULTS_NAME, "command": command,
          "config": dataclasses.asdict(cfg), "platform": jax.default_backend(),
          "devices": [d.device_kind for d in jax.devices()],
          "machine": cli.cpu_description(), "cpus": os.cpu_count(),
          "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
          "date": datetime.date.today().isoformat(), "rounds": rounds,
          "summary": summary}


def _peer_summary(rounds, cfg) -> dict:
  def larq(model, part, key):
    return _median([1e3 * rnd["larq"]["results"][model][part][key]["median_s"]
                    for rnd in rounds])

  def lce_best(rnd):  # LCE's fastest interpreter setting of the binary network
    return min(c["median_s"] for c in rnd["lce"]["results"]["binary"]["configs"].values())
  return {
      "larq/train_ms": larq("binary", "train", "custom"),
      "larq/fp_train_ms": larq("fp", "train", "custom"),
      "larq/infer_b1_ms": larq("binary", "infer", "custom_b1"),
      f"larq/infer_b{cfg.batch}_ms": larq("binary", "infer", f"custom_b{cfg.batch}"),
      "lce/b1_ms": _median([1e3 * lce_best(rnd) for rnd in rounds]),
  }


def _ratios(s: dict, backend: str, batch: int) -> None:
  """Speed-ups over the peers (> 1: bnnjax is faster)."""
  s[f"{backend}/train_speedup_vs_larq"] = s["larq/train_ms"] / s[f"{backend}/train_ms"]
  s[f"{backend}/eval_b{batch}_speedup_vs_larq"] = (s[f"larq/infer_b{batch}_ms"]
                                                   / s[f"{backend}/eval_b{batch}_ms"])
  s[f"{backend}/eval_b1_speedup_vs_larq"] = s["larq/infer_b1_ms"] / s[f"{backend}/eval_b1_ms"]
  s[f"{backend}/packed_b1_vs_lce"] = s[f"{backend}/packed_b1_ms"] / s["lce/b1_ms"]


def format_markdown(r: dict) -> str:
  s, cfg = r["summary"], r["config"]
  b = cfg["batch"]
  e = cfg.get("eval_batch") or b
  geometry = (f"{cfg.get('image_size', 28)}×{cfg.get('image_size', 28)}×"
              f"{cfg.get('channels', 1)}, {cfg.get('classes', 10)} classes")
  where = (f"{r['cpus']} cores" if r["platform"] == "cpu"
           else ", ".join(sorted(set(r["devices"]))))
  lines = [f"# Bi-Real ResNet-18 training and inference speed ({r['platform']}, "
           f"{where}, {r['date']})", "",
           f"Machine: {r['machine']}; devices: {', '.join(r['devices'])}"
           + (f"; `GLIBC_TUNABLES={r['glibc_tunables']}` (bnnjax.host_memory; the "
              "peers inherit it)" if r.get("glibc_tunables") else "") + ".", "",
           f"`{r['command']}`", "",
           f"{geometry}, width {cfg['width']}, ImageNet stem, `{cfg['method']}` binary "
           f"convs, training batch {b}, inference batch 1 and {e}, Adam; median of "
           f"{cfg['repeats']} timed calls per round, median over {cfg['rounds']} "
           "alternated round(s). Shared machine: compare ratios within this file, not "
           "absolute times across runs.", "",
           "| backend | train step ms (img/s) | eval b1 ms | eval b{0} ms | packed b1 ms | "
           "packed b{0} ms |".format(e), "|---|---|---|---|---|---|"]
  for backend in cfg["backends"].split(","):
    t = s[f"{backend}/train_ms"]
    lines.append(f"| `{backend}` | {t:.1f} ({b / t * 1e3:.0f}) | "
                 f"{s[f'{backend}/eval_b1_ms']:.2f} | {s[f'{backend}/eval_b{e}_ms']:.2f} | "
                 f"{s[f'{backend}/packed_b1_ms']:.3f} | {s[f'{backend}/packed_b{e}_ms']:.2f} |")
  lines.append(f"| float twin (`fp`) | {s['fp_train_ms']:.1f} "
               f"({b / s['fp_train_ms'] * 1e3:.0f}) | | | | |")
  dtypes = cfg.get("compute_dtypes", "auto").split(",")
  if len(dtypes) > 1:
    lines += ["", f"Binary training step by `binary_compute_dtype` (the table's column: "
              f"`{dtypes[0]}`): " + "; ".join(
                  f"`{be}` " + ", ".join(
                      f"{d} {s[f'{be}/train_ms' if i == 0 else f'{be}/train_{d}_ms']:.1f} ms"
                      for i, d in enumerate(dtypes))
                  for be in cfg["backends"].split(",")) + "."]
  others = [m for m in cfg.get("also_methods", "").split(",")
            if m and f"{m}/train_ms" in s]
  if others:
    first = _methods_backend(cfg["backends"].split(","))
    peer = "larq/train_ms" in s
    lines += ["", f"Binary training step by method (`{first}` backend). Larq's peer "
              "binarises with a bare `ste_sign` and no scale; `xnor` adds α and the "
              "activation map K, `xnorpp_1` a learned Γ per output channel, `bonn` one "
              "scalar per layer and its two loss terms.", "",
              "| method | train step ms (img/s) |" + (" vs Larq |" if peer else ""),
              "|---|---|" + ("---|" if peer else "")]
    for m, t in [(cfg["method"], s[f"{first}/train_ms"])] + [
        (m, s[f"{m}/train_ms"]) for m in others]:
      lines.append(f"| `{m}` | {t:.1f} ({b / t * 1e3:.0f}) |"
                   + (f" {s['larq/train_ms'] / t:.2f}× |" if peer else ""))
  models = {be: ("packed" if d.get("eval_model_packed") else "eval-mode")
            for be, d in r["rounds"][0]["bnnjax"].items() if "eval_b1" in d}
  lines += ["", "The eval step's model: " + ", ".join(
      f"`{be}` {m}" for be, m in models.items()) + " (kernels packed once per "
      "evaluation, not per batch)."]
  if "larq/train_ms" in s:
    lines += ["", "| peer | train step ms | float twin ms | infer b1 ms | "
              f"infer b{b} ms | LCE b1 ms |", "|---|---|---|---|---|---|",
              f"| Larq 0.14 / LCE 0.16 | {s['larq/train_ms']:.1f} | "
              f"{s['larq/fp_train_ms']:.1f} | {s['larq/infer_b1_ms']:.2f} | "
              f"{s[f'larq/infer_b{b}_ms']:.2f} | {s['lce/b1_ms']:.3f} |", "",
              "Ratios (> 1: bnnjax faster, except packed/LCE: < 1 is bnnjax faster):", "",
              "| backend | train vs Larq | eval b1 vs Larq | eval b{0} vs Larq | "
              "packed b1 / LCE b1 |".format(b), "|---|---|---|---|---|"]
    for backend in cfg["backends"].split(","):
      lines.append(f"| `{backend}` | {s[f'{backend}/train_speedup_vs_larq']:.2f}× | "
                   f"{s[f'{backend}/eval_b1_speedup_vs_larq']:.2f}× | "
                   f"{s[f'{backend}/eval_b{b}_speedup_vs_larq']:.2f}× | "
                   f"{s[f'{backend}/packed_b1_vs_lce']:.2f} |")
  if "readme_command" in s:
    rc = s["readme_command"]
    lines += ["", f"README first command (`{rc['command']}`), install excluded: "
              f"{rc['wall_s']:.0f} s, test top-1 {rc['test_top1']:.2%}."]
  eq = [f"{k}={v}" for rnd in r["rounds"] for be, d in rnd["bnnjax"].items()
        if isinstance(d, dict) for k, v in d.items() if k.startswith("packed_equals")]
  lines += ["", "Packed logits equal eval mode's bit for bit: " + ", ".join(sorted(set(eq))) + "."]
  agree = []
  for n in (1, e):
    diffs = [d[f"packed_max_logit_diff_b{n}"] for rnd in r["rounds"]
             for d in rnd["bnnjax"].values() if f"packed_max_logit_diff_b{n}" in d]
    votes = [d.get(f"packed_argmax_agree_b{n}") for rnd in r["rounds"]
             for d in rnd["bnnjax"].values() if f"packed_max_logit_diff_b{n}" in d]
    votes = [v for v in votes if v is not None]
    if diffs:
      agree.append(f"batch {n}: largest |logit difference| {max(diffs):.3g}"
                   + (f", argmax agreement {min(votes):.0%} at worst" if votes else ""))
  if agree:
    lines += ["", "Packed against eval mode, " + "; ".join(agree) + "."]
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
  return cli.config_main("benchmarks.train_speed", Config, argv, doc=__doc__,
                         results_name=RESULTS_NAME, run_benchmark=run_benchmark,
                         format_markdown=format_markdown)


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  main()
