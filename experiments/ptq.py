"""Data-free post-training quantization sweep (Nayak et al., Bit Efficient Quantization;
docs/ptq.md): ``python -m experiments.ptq --config=configs/ptq_resnet18.py [--workdir=...]``.

1. The float model: a workdir that holds a finished run (``results.json`` from
   ``experiments.run`` / ``train_and_evaluate``) is loaded as it is; otherwise the
   config's top-level fields (without ``ptq``) are trained there, resuming if a run was
   interrupted. The model must be full precision (``method="fp"``).
2. Every scheme × bit-width × granularity of ``config.ptq``: quantize the parameter
   groups (no data), test top-1 and confusion matrix on the test images (one jitted
   function for all of them: same shapes, no recompilation), packed/gzip/LZMA sizes,
   bit-efficiency metrics per tensor, class grouping.
3. ``<workdir>/<ptq_dir>/``: ``ptq.md`` (tables beside the seed's Tables 1-2),
   ``ptq.json`` (everything but the per-tensor metrics), ``ptq_tensors.json`` (the
   metrics of every quantized tensor) and ``plots/*.png`` (Figs. 1-4).

Results are never replaced silently: when ``<workdir>/<ptq_dir>`` already holds a
sweep's results the command stops before doing anything; ``--overwrite`` replaces
them, ``--ptq_dir=<name>`` writes beside them.

Flags: ``--config=configs/x.py[:arg]``, ``--config.field=value`` (e.g.
``--config.ptq.bits="(8,4,3)"``), ``--workdir`` (default ``runs/<config name>``),
``--ptq_dir`` (default ``ptq``), ``--overwrite``.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time

import numpy as np
from absl import app
from absl import flags
from absl import logging

from experiments.paths import default_workdir

def _define_flags():
  """The command's flags, defined only when it runs as a command, so that importing
  this module (tests, notebooks, other commands) does not clash with other modules'
  flags of the same name (--config, --workdir)."""
  global _CONFIG, _WORKDIR, _PTQ_DIR, _OVERWRITE
  _CONFIG = cli.define_config_flag()
  _WORKDIR = flags.DEFINE_string(
      "workdir", None, "Directory of the float model's run (trained there if not finished).")
  _PTQ_DIR = flags.DEFINE_string(
      "ptq_dir", "ptq", "Subdirectory of the workdir for the sweep's tables, JSON and plots.")
  _OVERWRITE = flags.DEFINE_bool(
      "overwrite", False, "Replace the results of an earlier sweep in --ptq_dir.")

OUTPUT_FILES = ("ptq.md", "ptq.json", "ptq_tensors.json")

CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                      "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                "ship", "truck"],
}

# The seed's Table 1 (CIFAR-10 ResNet-18): top-1 % and size in Mb, and Table 2.
PAPER_FP = 90.87
PAPER_TABLE1 = {
    "asymmetric": {8: 90.83, 7: 90.80, 6: 90.90, 5: 90.61, 4: 90.04, 3: 85.93, 2: 22.46},
    "symmetric": {8: 90.51, 7: 90.46, 6: 90.48, 5: 90.41, 4: 89.54, 3: 88.93, 2: 77.24},
}
PAPER_SIZE_MB = {
    "fp": 2.0,
    "asymmetric": {8: 1.4, 7: 1.35, 6: 1.30, 5: 1.25, 4: 1.20, 3: 1.16, 2: 1.11},
    "symmetric": {8: 0.76, 7: 0.65, 6: 0.55, 5: 0.45, 4: 0.366, 3: 0.291, 2: 0.223},
}
PAPER_POW2 = {"top1": 86.9, "bit_levels": 4.0}
PAPER_TABLE2 = {"asymmetric": (85.93, 88.2), "power_of_two": (86.9, 87.7)}


# ----------------------------------------------------------------------------- config
def train_config(config):
  """The trainer's config: every top-level field but ``ptq``."""
  c = config.copy_and_resolve_references()
  if "ptq" in c:
    with c.unlocked():
      del c["ptq"]
  return c


def check_ptq_config(p) -> None:
  """Fails early, naming the ``config.ptq`` field, for values the sweep cannot use."""
  from bnnjax.train.validation import ConfigError
  try:
    _check_ptq_config(p)
  except ValueError as e:
    raise ConfigError(str(e)) from e


def _check_ptq_config(p) -> None:
  from bnnjax import ptq

  def bad(field, value, allowed):
    raise ValueError(f"config.ptq.{field}={value!r}; allowed values are {allowed}.")

  for s in p.schemes:
    if s not in ptq.SCHEMES:
      bad("schemes", tuple(p.schemes), f"a subset of {list(ptq.SCHEMES)}")
  for b in p.bits:
    if isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= 8:
      bad("bits", tuple(p.bits), "integers 2 to 8")
  for g in p.granularities:
    if g not in ptq.GRANULARITIES:
      bad("granularities", tuple(p.granularities), f"a subset of {list(ptq.GRANULARITIES)}")
  ptq.model.check_groups(tuple(p.groups))
  if not (p.schemes and p.bits and p.granularities and p.groups):
    raise ValueError("config.ptq.schemes, bits, granularities and groups must not be empty.")
  if p.grouping_bits not in p.bits:
    bad("grouping_bits", p.grouping_bits, f"one of config.ptq.bits {tuple(p.bits)}")
  if p.figure_bits not in p.bits:
    bad("figure_bits", p.figure_bits, f"one of config.ptq.bits {tuple(p.bits)}")
  if p.histogram_scheme not in p.schemes:
    bad("histogram_scheme", p.histogram_scheme, f"one of config.ptq.schemes {tuple(p.schemes)}")
  if isinstance(p.eval_batch_size, bool) or not isinstance(p.eval_batch_size, int) or (
      p.eval_batch_size < 1):
    bad("eval_batch_size", p.eval_batch_size, "integers >= 1")
  n = p.get("num_test_examples", None)
  if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
    bad("num_test_examples", n, "integers >= 1, or None for the whole test split")
  if isinstance(p.grouping_merges, bool) or not isinstance(p.grouping_merges, int) or (
      p.grouping_merges < 0):
    bad("grouping_merges", p.grouping_merges, "integers >= 0")


def check_output_dir(out_dir: str, overwrite: bool) -> None:
  """Refuses to replace an earlier sweep's results unless ``overwrite``."""
  found = [f for f in OUTPUT_FILES if os.path.exists(os.path.join(out_dir, f))]
  if found and not overwrite:
    raise FileExistsError(
        f"{out_dir} already holds the results of a PTQ sweep ({', '.join(found)}). "
        "Nothing was changed: pass --overwrite to replace them, or --ptq_dir=<name> to "
        "write the new sweep beside them.")


# ------------------------------------------------------------------------ the model
def check_figure_layer(model, layer: str, groups) -> None:
  """``ValueError`` naming ``config.ptq.figure_layer`` unless it is one of the model's
  tensors in the quantized ``groups`` (a state path such as
  ``blocks/2/unit2/conv/kernel``)."""
  from bnnjax import ptq
  names = {ptq.path_name(k): g for k, g in ptq.parameter_groups(model).items()
           if g in groups}
  if layer not in names:
    from bnnjax.train.validation import ConfigError
    kernels = sorted(n for n, g in names.items() if g in ("conv", "dense"))
    raise ConfigError(f"config.ptq.figure_layer={layer!r} is not a tensor of this model "
                     f"in config.ptq.groups={tuple(groups)}; its kernels are {kernels}.")


def finished_run(workdir: str) -> bool:
  return all(os.path.exists(os.path.join(workdir, f)) for f in ("results.json",
                                                                 "config.json"))


def full_precision(method) -> bool:
  """Whether ``method`` (a ``config.method``, any spelling the registry reads) is the
  full-precision method; an unknown name is not."""
  from bnnjax import methods
  try:
    return methods.get(method) is methods.fp.METHOD
  except ValueError:
    return False


def check_before_training(config, workdir: str) -> None:
  """A wrong method or a typo in the figure layer should not wait for the end of
  training (``train.set_up`` checks every other field); nothing is written."""
  from flax import nnx
  from bnnjax import train
  from bnnjax.train.validation import ConfigError
  if finished_run(workdir):
    return
  tcfg = train_config(config)
  if not full_precision(tcfg.method):
    raise ConfigError(
        f"config.method={tcfg.method!r}; allowed values are ['fp']: post-training "
        "quantization starts from a full-precision model (nothing was trained).")
  try:
    setup = train.set_up(tcfg)
  except (ValueError, TypeError) as e:
    raise ConfigError(str(e)) from e
  check_figure_layer(nnx.merge(setup.graphdef, setup.state.params, setup.state.rest),
                     config.ptq.figure_layer, config.ptq.groups)


def obtain_model(config, workdir: str):
  """Trains the float model in ``workdir`` unless a finished run is there; loads it.

  Returns ``(model, train_config, info, train_results)``.
  """
  from bnnjax import train
  from bnnjax.train import trainer
  tcfg = train_config(config)
  results_path = os.path.join(workdir, "results.json")
  if finished_run(workdir):
    diff = list(trainer.config_differences(workdir, tcfg))
    print(f"Using the trained model of the finished run in {workdir}.", flush=True)
    if diff:
      print(f"Note: that run's config differs from this one in {diff}; the sweep "
            "quantizes the trained model as it is (see its config.json).", flush=True)
  else:
    check_before_training(config, workdir)
    train.train_and_evaluate(tcfg, workdir)
  model, cfg, info = train.load_trained(workdir)
  if not full_precision(cfg.method):
    from bnnjax.train.validation import ConfigError
    raise ConfigError(
        f"--workdir={workdir} holds a model trained with method={cfg.method!r}; "
        "post-training quantization starts from a full-precision model (method='fp'): "
        "give the workdir of a float run, or a new one. Nothing was changed.")
  check_figure_layer(model, config.ptq.figure_layer, config.ptq.groups)
  with open(results_path) as f:
    results = json.load(f)
  return model, cfg, info, results


def load_test_batches(cfg, info, p) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """The test images as ``(images, labels, mask)`` batches of one size (the last one
  padded, ``mask`` 0 on the padding), so one compiled function sees them all."""
  from bnnjax import data
  pipe = data.make_pipeline(
      cfg.dataset, split=info.splits[1], batch_size=p.eval_batch_size, train=False,
      seed=cfg.seed, data_dir=cfg.get("data_dir", None),
      num_examples=p.num_test_examples, image_size=cfg.get("image_size", None))
  batches = []
  for b in pipe:
    images, labels = np.asarray(b["image"]), np.asarray(b["label"], np.int32)
    n = labels.shape[0]
    pad = p.eval_batch_size - n
    mask = np.concatenate([np.ones(n, np.int32), np.zeros(pad, np.int32)])
    if pad:
      images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
      labels = np.concatenate([labels, np.zeros(pad, np.int32)])
    batches.append((images, labels, mask))
  return batches


def make_confusion_fn(graphdef, num_classes: int):
  """Jitted ``(state, images, labels, mask) -> (C, C)`` counts (rows: true class)."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  @jax.jit
  def confusion(state, images, labels, mask):
    logits = nnx.merge(graphdef, state)(images, train=False)
    pred = jnp.argmax(logits, axis=-1)
    return jnp.zeros((num_classes, num_classes), jnp.int32).at[labels, pred].add(mask)

  return confusion


def confusion_matrix(fn, state, batches) -> np.ndarray:
  total = None
  for images, labels, mask in batches:
    c = fn(state, images, labels, mask)
    total = c if total is None else total + c
  return np.asarray(total, np.int64)


# ------------------------------------------------------------------------ the sweep
def sweep(model, p, batches, num_classes: int):
  """Every scheme × granularity × bits of ``p``; returns ``(float_row, rows,
  per_tensor, figure_values)``."""
  from flax import nnx
  from bnnjax import ptq

  graphdef, state = nnx.split(model)
  groups = ptq.parameter_groups(model)
  names = {ptq.path_name(k): g for k, g in groups.items()}
  originals = {ptq.path_name(path): np.asarray(var[...])
               for path, var in nnx.to_flat_state(state) if tuple(path) in groups}
  fn = make_confusion_fn(graphdef, num_classes)

  t0 = time.perf_counter()
  conf = confusion_matrix(fn, state, batches)
  float_row = {
      "top1": 100 * np.trace(conf) / conf.sum(), "count": int(conf.sum()),
      "confusion": conf.tolist(), "seconds": time.perf_counter() - t0,
      "storage": ptq.storage_report({}, ptq.float_tensors(state), compress=p.compress),
      "grouping": ptq.group_classes(conf, num_merges=p.grouping_merges),
      "num_params": int(sum(np.size(v) for v in ptq.float_tensors(state).values())),
  }
  print(f"float32: top-1 {float_row['top1']:.2f}% on {float_row['count']} test images",
        flush=True)

  rows, per_tensor = [], {}
  figure_values = {"float32": originals[p.figure_layer]}
  for scheme in p.schemes:
    for granularity in p.granularities:
      for bits in p.bits:
        t0 = time.perf_counter()
        new_state, quantized = ptq.quantize_params(
            state, groups, scheme=scheme, bits=bits, granularity=granularity,
            include=tuple(p.groups))
        conf = confusion_matrix(fn, new_state, batches)
        t_eval = time.perf_counter() - t0
        metrics = {n: ptq.tensor_metrics(originals[n], q) for n, q in quantized.items()}
        weights = [n for n in quantized if names[n] in ("conv", "dense")]
        storage = ptq.storage_report(quantized, ptq.float_tensors(new_state, quantized),
                                     compress=p.compress)
        key = f"{scheme}/{granularity}/{bits}"
        per_tensor[key] = metrics
        figure_values[(scheme, granularity, bits)] = np.asarray(
            quantized[p.figure_layer].values)
        row = {
            "scheme": scheme, "granularity": granularity, "bits": bits,
            "top1": 100 * np.trace(conf) / conf.sum(), "confusion": conf.tolist(),
            "storage": storage,
            "weights": ptq.summarize(metrics, weights),
            "all_tensors": ptq.summarize(metrics),
            "grouping": ptq.group_classes(conf, num_merges=p.grouping_merges),
            "seconds": {"quantize_and_eval": t_eval,
                        "total": time.perf_counter() - t0},
        }
        rows.append(row)
        print(f"{key:32s} top-1 {row['top1']:6.2f}%  packed {storage['packed'] / 1024:8.1f}"
              f" KiB  ({row['seconds']['total']:.1f} s)", flush=True)
  return float_row, rows, per_tensor, figure_values


# ----------------------------------------------------------------------- reporting
def _kib(n) -> str:
  return f"{n / 1024:.1f}" if n is not None else "–"


def _find(rows, scheme, granularity, bits):
  for r in rows:
    if (r["scheme"], r["granularity"], r["bits"]) == (scheme, granularity, bits):
      return r
  return None


def _merge_text(m, names) -> str:
  a, b = m["merged"]
  return f"{'+'.join(names[i] for i in a)} ⊕ {'+'.join(names[i] for i in b)}"


def markdown(report: dict) -> str:
  p = report["ptq"]
  rows, fl = report["rows"], report["float"]
  names = report["class_names"]
  bits = sorted(p["bits"], reverse=True)
  train = report["train"]
  lines = [
      "# Data-free post-training quantization (seed: Bit Efficient Quantization)", "",
      f"Command: `{report['command']}`", "",
      f"Float model: ResNet-18 (width {train['width']}, {train['num_params']:,} "
      f"parameters and batch statistics) trained {train['steps']} steps on "
      f"{train['dataset']}; test top-1 {train['test_top1']:.2f}% on the whole test split. "
      f"The sweep evaluates the first {fl['count']} test images. Quantized groups: "
      f"{', '.join(p['groups'])} (vectors always per tensor). Seed: CIFAR-10 "
      "ResNet-18, Table 1.", "",
      "## Top-1 (%) by scheme and bits (seed Table 1)", "",
      "| scheme | granularity | FP32 | " + " | ".join(f"{b}b" for b in bits) + " |",
      "|---|---|---|" + "---|" * len(bits),
  ]
  for scheme in p["schemes"]:
    for gran in p["granularities"]:
      cells = [f"{_find(rows, scheme, gran, b)['top1']:.2f}" for b in bits]
      lines.append(f"| {scheme} | {gran.replace('_', ' ')} | {fl['top1']:.2f} | "
                   + " | ".join(cells) + " |")
  for scheme, table in PAPER_TABLE1.items():
    lines.append(f"| *seed: {scheme}* | | *{PAPER_FP}* | "
                 + " | ".join(f"*{table[b]}*" if b in table else "" for b in bits) + " |")
  lines += ["", f"Seed, power of two: {PAPER_POW2['top1']} at average bit-levels "
            f"{PAPER_POW2['bit_levels']:.0f} (no bit-width given). Italic rows: the seed's "
            "CIFAR-10 ResNet-18 (it does not say per tensor or per channel)."]

  lines += ["", "## Power-of-two average bit-levels (seed Tables 1, 3c)", "",
            "log2 of the number of distinct values of each conv/dense kernel, averaged "
            "over kernels. Seed: 4 (CIFAR-10 ResNet-18), 5.2-6.2 (ImageNet models).", "",
            "| granularity | " + " | ".join(f"{b}b" for b in bits) + " |",
            "|---|" + "---|" * len(bits)]
  if "power_of_two" in p["schemes"]:
    for gran in p["granularities"]:
      lines.append(f"| {gran.replace('_', ' ')} | " + " | ".join(
          f"{_find(rows, 'power_of_two', gran, b)['weights']['bit_levels']:.2f}"
          for b in bits) + " |")

  fs = fl["storage"]
  lines += [
      "", "## Size and bit efficiency per configuration (seed Tables 1, 5)", "",
      "Sizes in KiB. *packed*: codes in n bits + scales, other tensors float32; gzip "
      "-6 and LZMA (xz, 7-Zip's algorithm) of that file, and of the float32 file of the "
      "dequantized values (how the seed stores them, Table 5). Bit efficiency: means "
      "over conv/dense kernels of levels used / 2^n, bit-levels (log2 distinct "
      "values), dynamic range per bit (octaves), relative L2 error and per-channel "
      "quartile error (see `bnnjax.ptq.metrics`). Bit-levels count the distinct values "
      "of a whole kernel, so per-channel grids (one per channel) go above n.", "",
      f"FP32 model: {_kib(fs['float32'])} KiB; gzip {_kib(fs.get('packed_gzip'))}, "
      f"LZMA {_kib(fs.get('packed_lzma'))}.", "",
      "| scheme | gran. | bits | top-1 | packed | packed gzip | packed LZMA | "
      "deq. f32 gzip | deq. f32 LZMA | levels used | bit-levels | range/bit | rel. err | "
      "quartile err |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    s, w = r["storage"], r["weights"]
    lines.append(
        f"| {r['scheme']} | {r['granularity'].replace('per_', '')} | {r['bits']} | "
        f"{r['top1']:.2f} | {_kib(s['packed'])} | {_kib(s.get('packed_gzip'))} | "
        f"{_kib(s.get('packed_lzma'))} | {_kib(s.get('dequantized_gzip'))} | "
        f"{_kib(s.get('dequantized_lzma'))} | {w['level_fraction']:.2f} | "
        f"{w['bit_levels']:.2f} | {w['range_per_bit']:.2f} | {w['relative_error']:.3f} | "
        f"{w['quartile_error']:.3f} |")
  lines += ["", "Seed sizes (Mb, CIFAR-10 ResNet-18): FP32 2; asymmetric 1.4 (8b) … 1.11 "
            "(2b); symmetric 0.76 (8b) … 0.223 (2b)."]

  gb = p["grouping_bits"]
  lines += ["", f"## Class grouping at {gb} bits (seed §IV.a, Table 2)", "",
            "Average-linkage clustering of the symmetrised confusion rates of each "
            "model; top-1 re-scored with the merged classes counted as one (merges found "
            "and scored on the same test images).", "",
            "| model | top-1 | merge 1 | top-1 after | merge 2 | top-1 after |",
            "|---|---|---|---|---|---|"]

  def grouping_line(label, g):
    cells = [label, f"{100 * g['accuracy']:.2f}"]
    for m in g["merges"][:2]:
      cells += [_merge_text(m, names), f"{100 * m['accuracy']:.2f}"]
    cells += [""] * (6 - len(cells))
    return "| " + " | ".join(cells) + " |"

  lines.append(grouping_line("float32", fl["grouping"]))
  for scheme in p["schemes"]:
    for gran in p["granularities"]:
      r = _find(rows, scheme, gran, gb)
      lines.append(grouping_line(f"{scheme} {gran.replace('_', ' ')} {gb}b", r["grouping"]))
  for scheme, (before, after) in PAPER_TABLE2.items():
    lines.append(f"| *seed: {scheme} 3b (CIFAR-10)* | *{before}* | *cat ⊕ dog* | "
                 f"*{after}* | | |")
  lines += ["", f"Plots in `{report['out_dir']}/`: {', '.join(report['plots'])}.",
            f"Time: {report['seconds']['total']:.0f} s in all ({report['seconds']['train']:.0f} s "
            f"training or loading, {report['seconds']['sweep']:.0f} s sweep)."]
  return "\n".join(lines) + "\n"


def make_plots(report: dict, figure_values: dict, out_dir: str) -> list[str]:
  from bnnjax.ptq import plots
  p = report["ptq"]
  plot_dir = os.path.join(out_dir, "plots")
  layer, fb = p["figure_layer"], p["figure_bits"]
  gran0 = p["granularities"][0]
  written = []
  versions = {"float32": figure_values["float32"]}
  for scheme in p["schemes"]:
    versions[f"{scheme} {fb}b"] = figure_values[(scheme, gran0, fb)]
  written.append(plots.plot_channel_quartiles(
      versions, os.path.join(plot_dir, "fig1_channel_quartiles.png"),
      title=f"{layer}: per-channel quartiles, {gran0.replace('_', ' ')} (seed Fig. 1)"))
  hs = p["histogram_scheme"]
  by_bits = {"float32": figure_values["float32"]}
  for b in sorted(p["bits"], reverse=True):
    by_bits[f"{b}b"] = figure_values[(hs, gran0, b)]
  written.append(plots.plot_histograms(
      {f"by scheme at {fb} bits": versions, f"{hs} by bits": by_bits},
      os.path.join(plot_dir, "fig2_histograms.png"),
      title=f"{layer}: value histograms (seed Fig. 2)"))
  gb = p["grouping_bits"]
  mats = {"float32": report["float"]["confusion"]}
  for scheme in p["schemes"]:
    mats[f"{scheme} {gb}b"] = _find(report["rows"], scheme, gran0, gb)["confusion"]
  written.append(plots.plot_confusions(mats, report["class_names"],
                                       os.path.join(plot_dir, "fig3_confusion.png")))
  curves = {}
  for r in report["rows"]:
    curves.setdefault(f"{r['scheme']} {r['granularity']}", {})[r["bits"]] = r["top1"]
  written.append(plots.plot_accuracy(
      curves, report["float"]["top1"], os.path.join(plot_dir, "fig4_accuracy.png"),
      title=f"ResNet-18 on {report['train']['dataset']}: top-1 against bits (seed Fig. 4)"))
  return [os.path.relpath(w, out_dir) for w in written]


# ------------------------------------------------------------------------------ run
def run(config, workdir: str, *, ptq_dir: str = "ptq", overwrite: bool = False,
        command: str | None = None) -> dict:
  """The whole experiment (module docstring); returns the report written to
  ``ptq.json``."""
  from bnnjax.train import trainer
  from bnnjax.train.workdir_lock import WorkdirLock
  t_start = time.perf_counter()
  p = config.ptq
  check_ptq_config(p)
  trainer._check_workdir(workdir)
  out_dir = os.path.join(workdir, ptq_dir)
  check_output_dir(out_dir, overwrite)
  check_before_training(config, workdir)  # before anything is written
  with WorkdirLock(workdir):  # held through training (re-entrant) and the sweep
    check_output_dir(out_dir, overwrite)
    return _run_locked(config, workdir, p, out_dir, command, t_start)


def _run_locked(config, workdir, p, out_dir, command, t_start) -> dict:
  model, cfg, info, train_results = obtain_model(config, workdir)
  t_trained = time.perf_counter()
  batches = load_test_batches(cfg, info, p)
  float_row, rows, per_tensor, figure_values = sweep(model, p, batches, info.num_classes)
  t_swept = time.perf_counter()

  names = CLASS_NAMES.get(cfg.dataset, [str(i) for i in range(info.num_classes)])
  report = {
      "command": command or "experiments.ptq.run",
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "workdir": workdir,
      "out_dir": out_dir,
      "train": {"dataset": cfg.dataset, "width": dict(cfg.model_kwargs).get("width", 64),
                "steps": int(train_results.get("step", 0)),
                "test_top1": 100 * train_results["test/top1"],
                "num_params": float_row["num_params"]},
      "ptq": {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()},
      "class_names": names,
      "float": float_row,
      "rows": rows,
      "paper": {"fp": PAPER_FP, "table1": PAPER_TABLE1, "size_mb": PAPER_SIZE_MB,
                "power_of_two": PAPER_POW2, "table2": PAPER_TABLE2},
  }
  os.makedirs(out_dir, exist_ok=True)
  report["plots"] = make_plots(report, figure_values, out_dir)
  report["seconds"] = {"train": t_trained - t_start, "sweep": t_swept - t_trained,
                       "total": time.perf_counter() - t_start}
  with open(os.path.join(out_dir, "ptq_tensors.json"), "w") as f:
    json.dump(per_tensor, f)
  with open(os.path.join(out_dir, "ptq.json"), "w") as f:
    json.dump(report, f, indent=1, default=float)
  with open(os.path.join(out_dir, "ptq.md"), "w") as f:
    f.write(markdown(report))
  print(f"PTQ sweep written to {out_dir} ({report['seconds']['total']:.0f} s)", flush=True)
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].serialize()
                                              .partition("=")[2])
  command = "python -m experiments.ptq " + " ".join(sys.argv[1:])
  run(_CONFIG.value, workdir, ptq_dir=_PTQ_DIR.value, overwrite=_OVERWRITE.value,
      command=command.strip())


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  from bnnjax.train import cli
  _define_flags()
  flags.mark_flags_as_required(["config"])
  cli.run(main, clean=(FileExistsError,))
