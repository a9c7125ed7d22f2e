"""experiments.sweep: points from config files, interruption and resumption, table."""

import csv
import json
import os
import subprocess
import sys

import pytest

from bnnjax import train
from bnnjax.train import checkpoint as ckpt_lib
from configs import xnorpp_resnet18
from experiments import sweep

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny(c):
  c.model_kwargs.width = 4
  c.num_train_steps = 2
  c.batch_size = 8
  c.eval_batch_size = 16
  c.num_train_examples = 32
  c.num_test_examples = 16
  c.checkpoint_every_steps = 1
  c.log_every_steps = 1
  c.progress = False
  c.tensorboard = False
  return c


def test_seed_ablations_are_sweeps_in_their_config_files():
  names = lambda path, arg=None: [p.name for p in sweep.load_sweep(path, arg)]
  assert names("configs/xnorpp_resnet18.py") == ["xnor", "case1", "case2", "case3",
                                                 "case4"]
  assert names("configs/cf_vgg7.py", "method=xnor_cf") == [
      "xnor_cf_1", "xnor_cf_2", "xnor_cf_4", "xnor_cf_8", "xnor_cf_16",
      "xnor_cf_2_first_last"]
  assert len(names("configs/cf_nin.py")) == 10
  bonn = sweep.load_sweep("configs/bonn_resnet18.py", None)
  assert {p.overrides["bonn_lambda"] for p in bonn} == {0.0, 1e-5, 1e-4, 1e-3}
  with pytest.raises(ValueError, match="no sweep"):
    sweep.load_sweep("configs/fp_wrn22.py", None)
  with pytest.raises(ValueError, match="method=bonn"):
    sweep.load_sweep("configs/bonn_resnet18.py", "method=xnor")


def test_overrides_keep_field_references_and_reject_unknown_fields():
  from configs import bonn_resnet18
  c = bonn_resnet18.get_config()
  d = sweep.apply_overrides(c, sweep.Point("p", {"bonn_lambda": 1e-3,
                                                 "model_kwargs.width": 8}))
  assert d.loss_terms.bayesian_kernel.weight == pytest.approx(5e-4)  # λ/2 follows λ
  assert c.bonn_lambda == 1e-4 and d.model_kwargs.width == 8
  with pytest.raises(ValueError, match="no field 'model_kwargs.depth'"):
    sweep.apply_overrides(c, sweep.Point("p", {"model_kwargs.depth": 3}))


def test_invalid_point_fails_before_any_training(tmp_path):
  from configs import cf_vgg7
  c = tiny(cf_vgg7.get_config())
  c.model_kwargs = {"width_mult": 0.0625}
  points = [sweep.Point("ok", {"group_size": 2}), sweep.Point("bad", {"group_size": 3})]
  with pytest.raises(ValueError, match="'bad'.*group_size"):
    sweep.run_sweep(c, points, str(tmp_path),
                    train_fn=lambda *a: pytest.fail("trained before checking"))


def test_sweep_interrupted_and_resumed_writes_the_table(tmp_path, monkeypatch, capsys):
  config = tiny(xnorpp_resnet18.get_config("dataset=mnist"))
  config.binary_compute = "float"  # compiles faster than the packed forward
  # Three points that differ in their seed only: one compiled program for the four
  # runs (points from config files are checked above and in cli_test.py).
  points = [sweep.Point(f"seed{i}", {"seed": i}) for i in range(3)]
  workdir = str(tmp_path)

  # First attempt: the second point dies right after its step-1 checkpoint.
  real_save = ckpt_lib.Checkpointer.save
  calls, interrupt = [], [True]

  def train_fn(c, subdir):
    calls.append(os.path.basename(subdir))
    if interrupt[0] and len(calls) == 2:
      def save_then_die(self, step, state):
        real_save(self, step, state)
        raise KeyboardInterrupt
      monkeypatch.setattr(ckpt_lib.Checkpointer, "save", save_then_die)
    return train.train_and_evaluate(c, subdir)
  with pytest.raises(KeyboardInterrupt):
    sweep.run_sweep(config, points, workdir, train_fn=train_fn)
  monkeypatch.setattr(ckpt_lib.Checkpointer, "save", real_save)
  interrupt[0] = False
  assert calls == ["seed0", "seed1"]

  # Second attempt: finished points are read, the interrupted one resumes.
  calls.clear()
  capsys.readouterr()
  rows = sweep.run_sweep(config, points, workdir, train_fn=train_fn)
  assert calls == ["seed1", "seed2"]
  assert "Resuming from the checkpoint of step 1" in capsys.readouterr().out
  assert [r["status"] for r in rows] == ["done (earlier)"] + ["done"] * 2
  assert all(r["step"] == 2 for r in rows)
  for i in range(3):  # each point trained its own config
    assert json.load(open(tmp_path / f"seed{i}" / "config.json"))["seed"] == i

  csv_path, md_path = sweep.write_table(rows, workdir, "xnorpp_resnet18")
  table = list(csv.DictReader(open(csv_path)))
  assert [r["point"] for r in table] == ["seed0", "seed1", "seed2"]
  assert [r["seed"] for r in table] == ["0", "1", "2"]
  best = max(rows, key=lambda r: r["test/top1"])
  md = open(md_path).read()
  assert md.count("(best)") == 1 and f"Best: `{best['point']}`" in md


def test_dry_run_prints_one_command_per_point(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "experiments.sweep", "--config=configs/cf_vgg7.py:dataset=mnist",
       f"--workdir={tmp_path}", "--dry_run", "--config.num_train_steps=3"],
      cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
  assert out.returncode == 0, out.stderr
  lines = out.stdout.strip().splitlines()
  assert len(lines) == 12
  assert all("-m experiments.run --config=configs/cf_vgg7.py:dataset=mnist" in l
             and "--config.num_train_steps=3" in l for l in lines)
  assert f"--workdir={tmp_path}/xnor_cf_16" in lines[9]
  assert "--config.quantize_first=True" in lines[-1]
  assert not os.listdir(tmp_path)  # a dry run trains nothing
