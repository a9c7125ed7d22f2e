"""benchmarks.sweep_runs.command: a sweep benchmark stopped by a signal ends like
experiments.run (one line naming the kept checkpoint, exit 128 + signal)."""

import signal

import pytest

from benchmarks import sweep_runs
from bnnjax.train import trainer


def test_interrupted_benchmark_prints_one_line_and_exits_128_plus_signal(capsys):
  message = ("Stopped by SIGTERM at step 250 of 936: the checkpoint of step 250 is kept "
             "in runs/x/checkpoints; run the same command to resume.")

  def main():
    raise trainer.Interrupted(message, signal.SIGTERM, 250)

  with pytest.raises(SystemExit) as e:
    sweep_runs.command(main)
  assert e.value.code == 128 + signal.SIGTERM
  err = capsys.readouterr().err
  assert err.strip() == message and "Traceback" not in err
  ran = []
  sweep_runs.command(lambda: ran.append(1))  # a run that ends normally returns
  assert ran == [1]
