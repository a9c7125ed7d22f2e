"""benchmarks.cf_scale_spread: the per-layer spread by hand, and a real tiny run."""

import json
import os

import numpy as np
import pytest

from benchmarks import cf_scale_spread
from bnnjax import train
from tests.train.trainer_test import tiny_config


def test_layer_spread_by_hand():
  # Two filters with mean|W_o| 1 and 3; scales 1 and 3 (per filter): mean 2, std 1.
  kernel = np.zeros((1, 1, 2, 2), np.float32)
  kernel[..., 0] = [1, -1]
  kernel[..., 1] = [3, -3]
  s = cf_scale_spread.layer_spread(kernel, np.array([1.0, 3.0]))
  assert s["scale_cv"] == pytest.approx(0.5)
  assert s["below_half"] == 0.0  # 1 is not below half of 2
  assert s["min_over_mean_w"] == pytest.approx(0.5)
  # One shared scale: no spread, whatever the latent weights.
  shared = cf_scale_spread.layer_spread(kernel, np.array(2.0))
  assert shared["scale_cv"] == 0.0 and shared["below_half"] == 0.0
  assert shared["min_over_mean_w"] == pytest.approx(0.5)
  # Scales 0.5, 3.5 (mean 2): the first is below half the mean.
  assert cf_scale_spread.layer_spread(kernel, np.array([0.5, 3.5]))["below_half"] == 0.5
  with pytest.raises(ValueError, match="not one per filter"):
    cf_scale_spread.layer_spread(kernel, np.ones((3, 2)))


def test_summary_of_real_runs(tmp_path):
  for method, n in (("bw_cf", 1), ("bw_cf", 2)):
    train.train_and_evaluate(tiny_config(method=method, group_size=n, num_train_steps=2,
                                         binary_compute="float"),
                             str(tmp_path / f"{method}_{n}_seed0"))
  os.makedirs(tmp_path / "xnor_cf_4_seed0")  # unfinished: no results.json, skipped
  r = cf_scale_spread.main([f"--runs={tmp_path}", f"--out={tmp_path / 'out'}"])
  assert [(s["method"], s["n"], s["seeds"]) for s in r["summary"]] == [
      ("bw", 1, 1), ("bw", 2, 1)]
  one, two = r["summary"]
  assert one["scale_cv"] > 0  # per-filter α of a random init
  assert two["scale_cv"] < one["scale_cv"]  # pairs share their mean
  with open(tmp_path / "out" / "cf_scale_spread.json") as f:
    assert json.load(f)["summary"] == r["summary"]
  assert "| BW-CF | 2 | 1 |" in (tmp_path / "out" / "cf_scale_spread.md").read_text()


def test_missing_runs_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="no finished"):
    cf_scale_spread.main([f"--runs={tmp_path}", f"--out={tmp_path}"])
  with pytest.raises(FileNotFoundError, match="--runs="):
    cf_scale_spread.main([f"--runs={tmp_path / 'nosuch'}", f"--out={tmp_path}"])
