"""experiments.export on a short run: the packed file re-scores the run's test top-1."""

import os
import subprocess
import sys

import pytest

from bnnjax import packed
from bnnjax.train import trainer
from configs import common
from experiments import export

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_export_reproduces_the_runs_test_accuracy(tmp_path):
  """One method with binary input and a shared scale (the XNOR-popcount path); every
  model x method's packed logits are checked against eval mode in tests/packed/. The
  run trains and evaluates on the float compute path (faster to compile than CPU's
  packed one), so the packed file's top-1 is compared with the float eval model's."""
  method = "xnor_cf_2"
  c = common.base_config()
  c.update(model_name="resnet18", method=method, model_kwargs={"width": 4},
           dataset="mnist", batch_size=16, eval_batch_size=50, num_train_steps=6,
           log_every_steps=3, checkpoint_every_steps=6, progress=False,
           num_train_examples=320, num_test_examples=120, binary_compute="float")
  workdir = str(tmp_path / "run")
  results = trainer.train_and_evaluate(c, workdir)
  lines = []
  summary = export.export(workdir, latency_batch=4, repeats=2, log=lines.append)
  assert summary["equal"], lines
  assert summary["packed_test_top1"] == results["test/top1"]
  assert os.path.exists(os.path.join(workdir, "packed.npz"))
  assert any("equal" in l for l in lines) and any("batch 4" in l for l in lines)
  model, meta = packed.load(summary["path"], with_meta=True)
  assert meta["extra"]["config"]["method"] == method
  with pytest.raises(FileExistsError, match="--overwrite"):
    export.export(workdir, latency_batch=1, repeats=1, log=lines.append)


def test_cli_refuses_an_unfinished_run_in_one_line(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "experiments.export",
                         f"--workdir={tmp_path}"], cwd=REPO, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 2
  assert "results.json does not exist" in proc.stderr
  assert "Traceback" not in proc.stderr
