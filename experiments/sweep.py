"""Runs every point of a config's sweep: ``python -m experiments.sweep --config=... --workdir=DIR``.

A config file describes its sweep (big_vision style) next to ``get_config``::

    def sweep(add, arg=None):
      for n in (1, 2, 4, 8, 16):
        add(method="xnor_cf", group_size=n)

Each ``add(**overrides)`` is one point: the config of ``get_config(arg)`` with the
given fields replaced (dotted names such as ``add(**{"model_kwargs.width": 8})`` reach
nested fields; ``add(name="...", ...)`` names the point's directory, otherwise
``k1=v1,k2=v2``). ``--config.field=value`` flags apply to every point.

Every point trains in ``DIR/<point>`` (resuming an interrupted point from its last
checkpoint, skipping a finished one), then ``DIR/sweep_results.{csv,md}`` get one row
per point and the best point by test top-1. ``--dry_run`` prints one
``experiments.run`` command per point instead, for a scheduler (a SLURM array, a TPU
VM ``--worker=all``) to run; running the sweep command afterwards finds every point
finished and only writes the table.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import importlib.util
import json
import math
import os
import re
import shlex
import sys
from typing import Any, Callable

from absl import app
from absl import flags
from absl import logging
import ml_collections



def _define_flags():
  """The command's flags, defined only when it runs as a command, so that importing
  this module (tests, notebooks) does not clash with other modules' ``--config``."""
  global _CONFIG, _WORKDIR, _DRY_RUN
  _CONFIG = cli.define_config_flag(
      "Config file with get_config and sweep: configs/x.py[:arg].")
  _WORKDIR = flags.DEFINE_string("workdir", None,
                                 "Sweep directory (one sub-directory a point).")
  _DRY_RUN = flags.DEFINE_bool("dry_run", False,
                               "Print one command per point; train nothing.")


METRICS = ("test/top1", "test/top5", "test/loss")


@dataclasses.dataclass(frozen=True)
class Point:
  """One sweep point: its directory name and the config fields it overrides."""
  name: str
  overrides: dict[str, Any]


def _format(value) -> str:
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, (tuple, list)):
    return "(" + ",".join(_format(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return str(value)


def point_name(overrides: dict[str, Any]) -> str:
  """``k1=v1,k2=v2`` made filesystem-safe (the default directory of a point)."""
  text = ",".join(f"{k}={_format(v)}" for k, v in overrides.items()) or "default"
  return re.sub(r"[^A-Za-z0-9_.,=+-]+", "_", text)


def load_sweep(config_path: str, arg: str | None) -> list[Point]:
  """The points that ``sweep(add, arg)`` in ``config_path`` adds.

  Raises:
    ValueError: the file has no ``sweep`` function, adds no point, or two points share
      a name.
  """
  from bnnjax.train.validation import ConfigError
  if not os.path.isfile(config_path):
    raise ConfigError(f"--config={config_path}: no such file.")
  spec = importlib.util.spec_from_file_location("_sweep_config", config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  fn = getattr(module, "sweep", None)
  if fn is None:
    raise ConfigError(f"--config={config_path} defines no sweep(add, arg=None) function.")
  points: list[Point] = []

  def add(name: str | None = None, **overrides):
    points.append(Point(name or point_name(overrides), dict(overrides)))
  try:
    fn(add, arg)
  except ValueError as e:
    raise ConfigError(f"--config={config_path}:{arg or ''}: {e}") from e
  if not points:
    raise ConfigError(f"sweep() of {config_path} (arg={arg!r}) added no point.")
  names = [p.name for p in points]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise ConfigError(f"sweep() of {config_path} adds points with the same name: "
                     f"{duplicates}; give them distinct add(name=...).")
  return points


def apply_overrides(config, point: Point):
  """A copy of ``config`` with ``point``'s fields set; unknown fields are errors.

  The copy keeps the config's FieldReferences, so e.g. ``bonn_lambda`` still sets the
  kernel loss weight ``λ/2``.
  """
  from bnnjax.train import validation
  c = copy.deepcopy(config)
  c.unlock()
  for key, value in point.overrides.items():
    *parents, leaf = key.split(".")
    node = c
    for part in parents:
      node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      names = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      close = validation.close_names(leaf, names or validation.known_fields())
      raise validation.ConfigError(
          f"Sweep point {point.name!r}: the config has no field {key!r}"
          + (f"; did you mean {', '.join(close)}?" if close else "."))
    try:
      node[leaf] = value
    except TypeError as e:
      raise validation.ConfigError(
          f"Sweep point {point.name!r}: config.{key}={value!r}: {e}") from e
  return c


def run_command(config_arg: str, workdir: str, point: Point,
                common: list[str]) -> str:
  """The ``experiments.run`` command that trains ``point`` on its own."""
  args = ["python", "-m", "experiments.run",
          f"--config={config_arg}", f"--workdir={os.path.join(workdir, point.name)}",
          *common]
  args += [f"--config.{k}={_format(v)}" for k, v in point.overrides.items()]
  return shlex.join(args)


def check_points(config, points: list[Point], workdir: str) -> list[tuple[Point, Any]]:
  """Each point's config; every unfinished point's is checked (validation and set-up,
  nothing written). Raises ``ConfigError`` naming the point."""
  from bnnjax import train
  from bnnjax.train.validation import ConfigError
  configs = [(p, apply_overrides(config, p)) for p in points]
  for point, c in configs:
    if os.path.exists(os.path.join(workdir, point.name, "results.json")):
      continue  # finished: its config built and trained
    try:
      train.set_up(c)
    except (ValueError, TypeError) as e:
      raise ConfigError(f"Sweep point {point.name!r}: {e}") from e
  return configs


def run_sweep(config, points: list[Point], workdir: str,
              train_fn: Callable | None = None) -> list[dict]:
  """Trains each point in ``workdir/<name>``: finished points (``results.json``) are
  read, unfinished ones resume from their checkpoint. A point whose loss turns NaN is
  recorded as failed and the sweep goes on. Returns one row per point.

  Raises:
    ValueError: an unfinished point's config is invalid (unknown field, a group size
      that does not divide a layer, ...); every such point is checked before any trains.
  """
  from bnnjax import train
  train_fn = train.train_and_evaluate if train_fn is None else train_fn
  configs = check_points(config, points, workdir)
  results_path = lambda point: os.path.join(workdir, point.name, "results.json")
  rows = []
  for i, (point, c) in enumerate(configs):
    subdir = os.path.join(workdir, point.name)
    row = {"point": point.name, **{k: _format(v) for k, v in point.overrides.items()}}
    if os.path.exists(results_path(point)):
      with open(results_path(point)) as f:
        results, status = json.load(f), "done (earlier)"
    else:
      print(f"[sweep {i + 1}/{len(points)}] {point.name} -> {subdir}", flush=True)
      try:
        results, status = train_fn(c, subdir), "done"
      except FloatingPointError as e:
        results, status = {}, f"failed: {e}"
    row.update({k: results.get(k, math.nan) for k in METRICS})
    row["step"] = results.get("step", "")
    row["status"] = status
    rows.append(row)
  return rows


def best(rows: list[dict]) -> dict | None:
  """The finished row with the highest test top-1."""
  done = [r for r in rows if isinstance(r["test/top1"], float)
          and not math.isnan(r["test/top1"])]
  return max(done, key=lambda r: r["test/top1"]) if done else None


def write_table(rows: list[dict], workdir: str, title: str) -> tuple[str, str]:
  """Writes ``sweep_results.csv`` and ``sweep_results.md``; returns their paths."""
  os.makedirs(workdir, exist_ok=True)
  keys = list(dict.fromkeys(k for r in rows for k in r))
  csv_path = os.path.join(workdir, "sweep_results.csv")
  with open(csv_path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
  top = best(rows)
  fmt = lambda v: f"{100 * v:.2f}" if isinstance(v, float) and not math.isnan(v) else (
      "–" if isinstance(v, float) else str(v))
  cols = [k for k in keys if k not in METRICS and k not in ("status", "step")]
  lines = [f"# Sweep: {title}", "",
           "| " + " | ".join(cols + ["test top-1 (%)", "test top-5 (%)", "steps",
                                     "status"]) + " |",
           "|" + "---|" * (len(cols) + 4)]
  for r in rows:
    mark = " **(best)**" if top is not None and r is top else ""
    lines.append("| " + " | ".join([str(r.get(k, "")) for k in cols] + [
        fmt(r["test/top1"]) + mark, fmt(r["test/top5"]), str(r["step"]),
        r["status"].split("\n")[0]]) + " |")
  if top is not None:
    lines += ["", f"Best: `{top['point']}` with test top-1 {100 * top['test/top1']:.2f}%."]
  md_path = os.path.join(workdir, "sweep_results.md")
  with open(md_path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return csv_path, md_path


def _common_overrides(argv_all: list[str]) -> list[str]:
  return [a for a in argv_all if a.startswith("--config.")]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  config_arg = flags.FLAGS["config"].serialize().partition("=")[2]
  path, _, arg = config_arg.partition(":")
  points = load_sweep(path, arg or None)
  workdir = _WORKDIR.value
  common = _common_overrides(sys.argv[1:])
  if _DRY_RUN.value:
    for point in points:
      print(run_command(config_arg, workdir, point, common))
    return
  from bnnjax.train import trainer
  from bnnjax.train.workdir_lock import WorkdirLock
  trainer._check_workdir(workdir)
  check_points(_CONFIG.value, points, workdir)  # before anything is written
  with WorkdirLock(workdir):  # one sweep per directory; each point locks its own
    rows = run_sweep(_CONFIG.value, points, workdir)
    _, md_path = write_table(rows, workdir, config_arg)
  print(open(md_path).read())


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  from bnnjax.train import cli
  _define_flags()
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main)
