"""The training-speed benchmark at a tiny size: runs every row and writes its table."""

import json

import pytest

from benchmarks import cli
from benchmarks import train_speed as ts


def test_tiny_run_writes_every_row(tmp_path):
  # One backend keeps it short; the backends' equality is tests/nn/compute_test.py's.
  ts.main(["--batch=4", "--repeats=1", "--warmup=1", "--width=4", "--backends=packed",
           f"--out={tmp_path}"])
  data = json.loads((tmp_path / "train_speed_cpu.json").read_text())
  s = data["summary"]
  for backend in ("packed",):
    for key in ("train", "eval_b1", "eval_b4", "packed_b1", "packed_b4"):
      assert s[f"{backend}/{key}_ms"] > 0, (backend, key)
    # The packed export computes what the eval-mode model computes.
    assert data["rounds"][0]["bnnjax"][backend]["packed_max_logit_diff_b4"] < 1e-5
    # config.binary_compute=packed evaluates the packed model in the trainer's eval step.
    assert data["rounds"][0]["bnnjax"][backend]["eval_model_packed"] is True
  md = (tmp_path / "train_speed_cpu.md").read_text()
  assert "| `packed` |" in md and "float twin" in md
  assert "The eval step's model: `packed` packed" in md
  assert f"Machine: {cli.cpu_description()}." in md  # the CPU, with its SIMD flags


def test_config_errors():
  with pytest.raises(ValueError, match="backends"):
    ts.Config(backends="float,fast")
  with pytest.raises(ValueError, match="batch"):
    ts.Config(batch=0)
