"""Packs a trained run for inference: ``python -m experiments.export --workdir=RUN``.

Restores the run (:func:`bnnjax.train.load_trained`), swaps its binary layers for
packed ones (:func:`bnnjax.packed.pack_model`: 1-bit kernel words run by the
XNOR-popcount kernels), writes the packed file (default ``RUN/packed.npz``; an existing
file is kept unless ``--overwrite``), loads it back, re-scores the run's test split with
the loaded file and compares its top-1 with the run's ``results.json``, then prints the
file size against float32 and the batch-1 / batch-N latency of the packed model against
the eval-mode float model (``binary_compute="float"``).

Exit status 1 when the packed model's test top-1 differs from the run's.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags

def _define_flags():
  """The command's flags, defined only when it runs as a command, so that importing
  this module (tests, notebooks, other commands) does not clash with other modules'
  flags of the same name (--config, --workdir)."""
  global _WORKDIR, _OUT, _OVERWRITE, _STEP, _BATCH, _REPEATS, _DATA_DIR
  _WORKDIR = flags.DEFINE_string("workdir", None, "A finished run of experiments.run.")
  _OUT = flags.DEFINE_string("out", None, "Packed file to write (default RUN/packed.npz).")
  _OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --out file.")
  _STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
  _BATCH = flags.DEFINE_integer("latency_batch", 64, "The batch N of the latency line.")
  _REPEATS = flags.DEFINE_integer("repeats", 20, "Timed calls per latency (median).")
  _DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data dir, if not the run's.")


def rescore(fn, config, info) -> dict:
  """Top-1 of ``fn`` (images → logits) over the run's test split, as the trainer
  evaluates it (same split, examples, batch size and masking)."""
  import numpy as np
  from bnnjax import data as data_lib
  from bnnjax.train import trainer
  pipe = data_lib.make_pipeline(
      config.dataset, split=info.splits[1],
      batch_size=trainer.setting(config, "eval_batch_size"), train=False,
      seed=config.seed, data_dir=config.get("data_dir", None),
      num_examples=config.get("num_test_examples", None),
      image_size=config.get("image_size", None), pad_remainder=True)
  correct = count = 0.0
  for batch in pipe:
    logits = np.asarray(fn(batch["image"]))
    mask = np.asarray(batch["mask"])
    correct += float(np.sum((logits.argmax(-1) == np.asarray(batch["label"])) * mask))
    count += float(np.sum(mask))
  return {"test/top1": correct / max(count, 1.0), "test/count": count}


def _latency_ms(fn, x, repeats: int) -> float:
  import jax
  import numpy as np
  for _ in range(3):
    jax.block_until_ready(fn(x))
  ts = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    np.asarray(fn(x))
    ts.append(time.perf_counter() - t0)
  return 1e3 * statistics.median(ts)


def export(workdir: str, out: str | None = None, *, overwrite: bool = False,
           step: int | None = None, latency_batch: int = 64, repeats: int = 20,
           data_dir: str | None = None, log=print) -> dict:
  """Packs, saves, reloads and re-scores the run in ``workdir``; returns a summary.

  Raises:
    FileNotFoundError: ``workdir`` is not a finished run.
    FileExistsError: ``out`` exists and not ``overwrite``.
  """
  import numpy as np
  from bnnjax import packed
  from bnnjax.train import trainer
  results_path = os.path.join(workdir, "results.json")
  if not os.path.exists(results_path):
    raise FileNotFoundError(f"{results_path} does not exist: --workdir must be a finished "
                            "run of experiments.run (train it to the end first).")
  out = out or os.path.join(workdir, "packed.npz")
  if not out.endswith(".npz"):
    out += ".npz"
  if os.path.exists(out) and not overwrite:
    raise FileExistsError(f"{out} exists; pass --overwrite to replace it or --out=FILE.")
  overrides = {"binary_compute": "float"}
  if data_dir:
    overrides["data_dir"] = data_dir
  model, config, info = trainer.load_trained(workdir, step, **overrides)
  with open(results_path) as f:
    run_top1 = json.load(f)["test/top1"]
  path = packed.save(packed.pack_model(model), out, overwrite=overwrite,
                     extra={"config": json.loads(config.to_json_best_effort()),
                            "run_test_top1": run_top1})
  loaded = packed.load(path)
  scored = rescore(packed.inference_fn(loaded), config, info)
  equal = scored["test/top1"] == run_top1
  size = os.path.getsize(path)
  f32 = packed.float32_nbytes(model)
  log(f"wrote {path}: {size / 1e6:.3f} MB ({f32 / size:.1f}× smaller than the float32 "
      f"model's {f32 / 1e6:.3f} MB)")
  log(f"test top-1 of the packed file {scored['test/top1']:.4%} "
      f"({int(scored['test/count'])} examples); the run's results.json "
      f"{run_top1:.4%}: {'equal' if equal else 'DIFFERENT'}")
  float_fn = packed.inference_fn(model)
  packed_fn = packed.inference_fn(loaded)
  summary = {"path": path, "bytes": size, "float32_bytes": f32,
             "packed_test_top1": scored["test/top1"], "run_test_top1": run_top1,
             "equal": equal}
  rng = np.random.default_rng(0)
  for n in (1, latency_batch):
    x = rng.standard_normal((n, *info.image_shape)).astype(np.float32)
    t_float = _latency_ms(float_fn, x, repeats)
    t_packed = _latency_ms(packed_fn, x, repeats)
    summary[f"latency_b{n}_ms"] = {"float": t_float, "packed": t_packed}
    log(f"batch {n}: packed {t_packed:.3f} ms, float eval model {t_float:.3f} ms "
        f"({t_float / t_packed:.2f}× faster)")
  return summary


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required: the run to export.")
  for name, flag in (("latency_batch", _BATCH), ("repeats", _REPEATS)):
    if flag.value < 1:
      raise app.UsageError(f"--{name}={flag.value}; allowed values are >= 1.")
  try:
    summary = export(_WORKDIR.value, _OUT.value, overwrite=_OVERWRITE.value,
                     step=_STEP.value, latency_batch=_BATCH.value, repeats=_REPEATS.value,
                     data_dir=_DATA_DIR.value)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    if os.environ.get("BNNJAX_DEBUG"):
      raise
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  sys.exit(0 if summary["equal"] else 1)


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  _define_flags()
  app.run(main)
