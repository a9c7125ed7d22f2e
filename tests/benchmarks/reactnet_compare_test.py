"""benchmarks.reactnet_compare: the points of configs/reactnet_resnet18.py's sweep, the
smoke mode, the mean ± std table, resuming and refusing runs of other settings.

Training is stubbed here: three real ResNet-18 runs cost minutes of XLA compilation
on a 2-core CPU, however few their steps. The configs are still checked for real
(``experiments.sweep`` builds every unfinished point's model and optimizer first),
and a real ReActNet run is trained in tests/models/reactnet_models_test.py.
"""

import json
import os

import numpy as np
import pytest

from benchmarks import reactnet_compare
from bnnjax.train.validation import ConfigError

# Stub accuracies by (method, reactnet) and seed.
TOP1 = {("xnor", True): 0.80, ("xnor", False): 0.70, ("xnorpp_1", False): 0.75}


@pytest.fixture
def trained(stub_train):
  """Training stubbed (conftest's ``stub_train``) with :data:`TOP1` plus 0.01 per
  seed; returns the list of configs it was called with."""
  return stub_train(lambda c: TOP1[(c.method, c.model_kwargs.reactnet)] + 0.01 * c.seed)


def test_points_are_the_sweep_at_the_configs_budget():
  config, points = reactnet_compare.comparison_points(
      dataset="fashion_mnist", seeds=[0, 1, 2], steps=None, width=None,
      train_examples=None, test_examples=None)
  assert [p.name for p in points] == [f"{v}_seed{s}" for s in range(3)
                                      for v in ("reactnet", "xnor", "xnorpp_1")]
  assert reactnet_compare.variants_of(points) == ["reactnet", "xnor", "xnorpp_1"]
  for p in points:
    assert p.overrides["dataset"] == "fashion_mnist"
    assert p.overrides["model_kwargs.reactnet"] == p.name.startswith("reactnet")
    assert "num_train_steps" not in p.overrides  # the config's 2 epochs for all
  assert config.num_epochs == 2.0 and config.model_kwargs.width == 16
  _, some = reactnet_compare.comparison_points(
      dataset="mnist", seeds=[1], steps=7, width=8, train_examples=None,
      test_examples=100)
  assert [p.name for p in some] == ["reactnet_seed1", "xnor_seed1", "xnorpp_1_seed1"]
  assert some[0].overrides["num_train_steps"] == 7
  assert some[0].overrides["model_kwargs.width"] == 8
  assert some[0].overrides["num_test_examples"] == 100


def test_smoke_mode_end_to_end(tmp_path, trained):
  workdir = tmp_path / "runs"
  results = reactnet_compare.main(["--smoke", f"--workdir={workdir}"])
  smoke = workdir / "smoke"  # runs and tables stay under the workdir
  assert sorted(os.listdir(smoke)) == sorted(
      ["reactnet_seed0", "xnor_seed0", "xnorpp_1_seed0", "sweep_results.csv",
       "sweep_results.md", "reactnet_compare.json", "reactnet_compare.md"])
  assert [(c.method, c.model_kwargs.reactnet) for c in trained] == list(TOP1)
  for c in trained:
    assert (c.dataset, c.seed, c.num_train_steps, c.model_kwargs.width,
            c.num_train_examples, c.num_test_examples) == ("mnist", 0, 3, 4, 256, 64)
  rows = json.load(open(smoke / "reactnet_compare.json"))["rows"]
  assert rows == results["rows"] and list(rows) == ["reactnet", "xnor", "xnorpp_1"]
  assert rows["reactnet"]["top1"] == pytest.approx([80.0])
  assert rows["reactnet"]["delta_vs_xnor"] == pytest.approx(10.0)
  assert rows["xnorpp_1"]["delta_vs_xnor"] == pytest.approx(5.0)
  assert all(r["status"] == ["done"] for r in rows.values())
  md = open(smoke / "reactnet_compare.md").read()
  assert "| ReActNet (xnor + RSign + RPReLU) | 80.00 ± 0.00 | +10.00 |" in md
  assert "| XNOR-Net | 70.00 ± 0.00 | – |" in md
  assert "--smoke" in md and "3 steps of batch 128" in md

  # Run again: every run is read, none trained; other settings are refused.
  trained.clear()
  again = reactnet_compare.main(["--smoke", f"--workdir={workdir}"])
  assert not trained and again["rows"]["xnor"]["status"] == ["done (earlier)"]
  with pytest.raises(ConfigError, match=r"reactnet_seed0 holds a run with a different "
                     r"config \(num_train_steps: 3 -> 4"):
    reactnet_compare.main(["--smoke", "--steps=4", f"--workdir={workdir}"])


def test_mean_and_std_over_seeds(tmp_path, trained):
  out = tmp_path / "out"
  results = reactnet_compare.main(
      ["--dataset=mnist", "--seeds=0,2", "--steps=2", "--width=4",
       "--train_examples=64", "--test_examples=32", f"--workdir={tmp_path / 'runs'}",
       f"--out={out}"])
  row = results["rows"]["xnorpp_1"]
  assert row["top1"] == pytest.approx([75.0, 77.0])
  assert row["top1_mean"] == pytest.approx(76.0)
  assert row["top1_std"] == pytest.approx(np.std([75.0, 77.0]))  # population std
  assert "| XNOR-Net++ (Γ case 1) | 76.00 ± 1.00 | +5.00 | 75.00, 77.00 |" in open(
      out / "reactnet_compare.md").read()
  assert json.load(open(out / "reactnet_compare.json"))["settings"]["seeds"] == [0, 2]
