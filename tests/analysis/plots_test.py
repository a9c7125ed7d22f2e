"""Scaling-factor histograms and training curves are written as non-empty PNGs."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from bnnjax import analysis
from bnnjax import models
from bnnjax import nn

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny(method):
  return models.get_model("vgg7", num_classes=10, input_shape=(8, 8, 1),
                          spec=nn.method_spec(method),
                          rngs=nnx.Rngs(params=jax.random.key(0, impl="rbg")),
                          width_mult=1 / 32)


def assert_png(path):
  assert os.path.getsize(path) > 1000
  with open(path, "rb") as f:
    assert f.read(8) == PNG_MAGIC


def test_scaling_factors_are_filterwise_mean_abs():
  model = tiny("bw_cf_2")
  factors = analysis.scaling_factors(model)
  layers = [(p, m) for p, m in nnx.iter_graph(model) if isinstance(m, nn.QuantConv)
            and m.spec.binary_kernel]
  for path, m in layers:
    k = np.asarray(m.kernel.get_value())
    np.testing.assert_allclose(factors["/".join(map(str, path))],
                               np.abs(k).mean(axis=(0, 1, 2)), rtol=1e-6)
  assert len(factors) == 6  # 5 binary convs + the hidden dense
  with pytest.raises(ValueError, match="include_fp"):
    analysis.scaling_factors(tiny("fp"))
  assert len(analysis.scaling_factors(tiny("fp"), include_fp=True)) == 8


def test_xnorpp_factors_are_the_learned_alpha():
  model = tiny("xnorpp_3")
  factors = analysis.scaling_factors(model)
  conv = model.ops[1].conv
  np.testing.assert_array_equal(factors["ops/1/conv"], np.asarray(conv.gamma_alpha[...]))


def test_cf_sharing_error():
  assert analysis.cf_sharing_error([1.0, 1.0, 2.0, 2.0], 2) == 0.0
  # groups (1, 3) → 2, 2: error sqrt(2)/sqrt(10)
  assert analysis.cf_sharing_error([1.0, 3.0], 2) == pytest.approx(np.sqrt(2 / 10))
  with pytest.raises(ValueError, match="group_size"):
    analysis.cf_sharing_error([1.0, 2.0, 3.0], 2)


def test_plot_scaling_factors(tmp_path):
  path = analysis.plot_scaling_factors(tiny("bwn"), str(tmp_path / "a" / "alpha.png"),
                                       title="BWN")
  assert_png(path)
  path = analysis.plot_scaling_factors({"l": np.arange(1.0, 9.0)},
                                       str(tmp_path / "b.png"))
  assert_png(path)


def write_metrics(path, rows):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")


def test_plot_training_curves(tmp_path):
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  rows = [{"step": s, "loss/total": 2.0 / s, "loss/ce": 1.9 / s, "train/top1": 0.1 * s,
           "lr": 1e-3, "epoch": s / 10, "examples_per_second": 100.0,
           "flip_ratio": 0.01 / s, "flip_ratio/ops/1/conv/kernel": 0.02 / s}
          for s in (1, 2, 3, 4)]
  rows.append({"step": 4, "test/top1": 0.5, "test/loss": 1.2, "test/count": 100.0})
  write_metrics(a, rows)
  write_metrics(b, rows[:2])
  assert len(analysis.read_metrics(a)) == 5
  assert analysis.read_metrics(os.path.join(a, "metrics.jsonl")) == analysis.read_metrics(a)
  assert_png(analysis.plot_training_curves(a, str(tmp_path / "one.png")))
  assert_png(analysis.plot_training_curves(
      {"xnor": a, "xnorpp": b}, str(tmp_path / "two.png"), keys=["loss", "top1"]))
  with pytest.raises(ValueError, match="keys"):
    analysis.plot_training_curves(a, str(tmp_path / "x.png"), keys=["nope"])
  with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
    analysis.plot_training_curves(str(tmp_path / "missing"), str(tmp_path / "x.png"))


def test_panels_group_train_and_test():
  from bnnjax.analysis import plots
  assert plots._panel("train/top1") == plots._panel("test/top1") == "top1"
  assert plots._panel("loss/ce") == plots._panel("test/loss") == "loss"
  assert plots._panel("flip_ratio/ops/1/conv/kernel") == "flip_ratio"
  assert plots._panel("lr") == "lr"
