"""What the sweep-driven benchmarks (``bonn_ablation``, ``reactnet_compare``) share:
train a list of ``experiments.sweep`` points in one workdir, timed, after refusing any
point whose directory holds a run of another config."""

from __future__ import annotations

import os
import sys
import time


def check_earlier_runs(config, points, workdir: str) -> None:
  """Refuses a point whose directory holds a run of another config (the sweep would
  read its results as they are); raises ``ConfigError`` naming the fields."""
  from bnnjax.train import trainer
  from bnnjax.train.validation import ConfigError
  from experiments import sweep
  for point in points:
    subdir = os.path.join(workdir, point.name)
    diff = trainer.config_differences(subdir, sweep.apply_overrides(config, point))
    if diff:
      details = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
      raise ConfigError(
          f"{subdir} holds a run with a different config ({details}); use another "
          "--workdir for these settings. Nothing was changed.")


def train_points(config, points, workdir: str, command: str):
  """Checks the points (:func:`check_earlier_runs`), trains or reads each through
  ``experiments.sweep.run_sweep`` and writes the sweep's own table (labelled
  ``command``) to ``workdir``.

  Returns:
    ``(swept, seconds)``: the sweep's result row of each point by name, and the wall
    seconds of each run trained by this call (runs finished earlier are only read).
  """
  from bnnjax import train
  from experiments import sweep
  check_earlier_runs(config, points, workdir)
  seconds: dict[str, float] = {}

  def timed_train(c, subdir):
    t0 = time.perf_counter()
    try:
      return train.train_and_evaluate(c, subdir)
    finally:
      seconds[os.path.basename(subdir)] = time.perf_counter() - t0

  swept = {r["point"]: r for r in sweep.run_sweep(config, points, workdir,
                                                  train_fn=timed_train)}
  sweep.write_table(list(swept.values()), workdir, command)
  return swept, seconds


def apply_smoke(args, argv, smoke: dict) -> None:
  """The ``--smoke`` and ``--out`` defaults of a sweep benchmark's parsed ``args``: with
  ``--smoke``, each key of ``smoke`` not given on the command line (``argv``) takes its
  value and the runs go to ``<workdir>/smoke``; ``--out`` defaults to that workdir with
  ``--smoke`` (never over ``benchmarks/results``), else to ``benchmarks/results``."""
  if args.smoke:
    given = {a.split("=")[0].lstrip("-") for a in argv if a.startswith("--")}
    for key, value in smoke.items():
      if key not in given:
        setattr(args, key, value)
    args.workdir = os.path.join(args.workdir, "smoke")
  if args.out is None:
    args.out = args.workdir if args.smoke else os.path.join("benchmarks", "results")


def command(main) -> None:
  """Runs a sweep benchmark's ``main()`` as a command: training stopped by SIGTERM /
  SIGINT (``trainer.Interrupted``) prints which checkpoint was kept, in one line
  without a traceback, and exits with 128 + the signal number, as ``experiments.run``
  does; rerunning the command resumes."""
  from bnnjax.train import trainer
  try:
    main()
  except trainer.Interrupted as e:
    print(str(e), file=sys.stderr)
    sys.exit(128 + int(e.signum))
