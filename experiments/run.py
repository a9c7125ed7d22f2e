"""Trains and evaluates one config: ``python -m experiments.run --config=configs/x.py``.

Flags: ``--config=configs/x.py[:arg]`` (``get_config(arg)``), single-field overrides
``--config.field=value``, and ``--workdir`` (default ``runs/<config name>[_<arg>]``).
Running the same command again resumes from the workdir's last checkpoint. Config
errors print one line (``--debug`` or ``BNNJAX_DEBUG=1`` for the traceback); a second
run on a workdir in use is refused; SIGTERM / Ctrl-C save a checkpoint and stop.

Several processes (hosts of a TPU pod or GPU cluster): run the same command on every
host with ``--distributed``; JAX finds the cluster itself on Cloud TPU, SLURM, Open MPI
and GKE. Elsewhere give ``--coordinator_address=HOST:PORT --num_processes=N
--process_id=I`` on each process. Training is data-parallel over all devices.
"""

from __future__ import annotations

import os

from absl import app
from absl import logging
from absl import flags

from experiments.paths import default_workdir

def _define_flags():
  """The command's flags, defined only when it runs as a command, so that importing
  this module (tests, notebooks, other commands) does not clash with other modules'
  flags of the same name (--config, --workdir)."""
  global _CONFIG, _WORKDIR, _DISTRIBUTED, _COORDINATOR, _NUM_PROCESSES, _PROCESS_ID
  _CONFIG = cli.define_config_flag()
  _WORKDIR = flags.DEFINE_string(
      "workdir", None, "Directory for checkpoints, metrics and results (resumed if present).")
  _DISTRIBUTED = flags.DEFINE_bool(
      "distributed", False, "Call jax.distributed.initialize() (cluster auto-detection).")
  _COORDINATOR = flags.DEFINE_string(
      "coordinator_address", None, "host:port of process 0, for a multi-process run.")
  _NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
  _PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from bnnjax import train  # after flag parsing, so --help is fast
  from bnnjax.train import parallel
  explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise app.UsageError("--coordinator_address, --num_processes and --process_id "
                           "go together; give all three (or --distributed alone).")
    parallel.initialize(*explicit)
  elif _DISTRIBUTED.value:
    parallel.initialize()
  # orbax logs every checkpoint step at INFO; keep the console for the progress bar.
  logging.set_verbosity(logging.WARNING)
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].serialize()
                                              .partition("=")[2])
  train.train_and_evaluate(_CONFIG.value, workdir)


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  from bnnjax.train import cli
  _define_flags()
  flags.mark_flags_as_required(["config"])
  cli.run(main)
