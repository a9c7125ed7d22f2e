"""The training-speed benchmark at a tiny size: runs every row and writes its table."""

import json

import pytest

from benchmarks import cli
from benchmarks import train_speed as ts


def test_tiny_run_writes_every_row(tmp_path):
  # One backend keeps it short; the backends' equality is tests/nn/compute_test.py's.
  # A geometry other than the peers' (as on a GPU: ImageNet's 224×224×3, 1000 classes),
  # no dataset read, and an inference batch other than the training batch.
  ts.main(["--batch=4", "--eval_batch=3", "--image_size=20", "--channels=3",
           "--classes=7", "--repeats=1", "--warmup=1", "--width=4", "--backends=packed",
           "--compute_dtypes=auto,bfloat16", "--also_methods=xnor,bonn",
           f"--out={tmp_path}"])
  data = json.loads((tmp_path / "train_speed_cpu.json").read_text())
  s = data["summary"]
  for backend in ("packed",):
    for key in ("train", "eval_b1", "eval_b3", "packed_b1", "packed_b3"):
      assert s[f"{backend}/{key}_ms"] > 0, (backend, key)
    # The packed export computes what the eval-mode model computes.
    assert data["rounds"][0]["bnnjax"][backend]["packed_max_logit_diff_b3"] < 1e-5
    assert data["rounds"][0]["bnnjax"][backend]["packed_argmax_agree_b3"] == 1.0
    # config.binary_compute=packed evaluates the packed model in the trainer's eval step.
    assert data["rounds"][0]["bnnjax"][backend]["eval_model_packed"] is True
  md = (tmp_path / "train_speed_cpu.md").read_text()
  assert "| `packed` |" in md and "float twin" in md
  assert "The eval step's model: `packed` packed" in md
  assert f"Machine: {cli.cpu_description()};" in md  # the CPU, with its SIMD flags
  assert "20×20×3, 7 classes" in md and "| packed b3 ms |" in md
  assert "argmax agreement 100% at worst" in md
  # the binary step timed again with bfloat16 ±1 products (config.binary_compute_dtype)
  assert s["packed/train_bfloat16_ms"] > 0
  assert "`packed` auto " in md and ", bfloat16 " in md
  # BONN's step (its layers and both loss terms) beside the main method's; a method
  # equal to --method is not timed twice
  assert s["bonn/train_ms"] > 0 and "xnor/train_ms" not in s
  assert set(data["rounds"][0]["bnnjax"]["methods"]) == {"bonn"}
  assert "Binary training step by method (`packed` backend)" in md
  assert "| `xnor` |" in md and "| `bonn` |" in md


def test_config_errors():
  with pytest.raises(ValueError, match="backends"):
    ts.Config(backends="float,fast")
  with pytest.raises(ValueError, match="batch"):
    ts.Config(batch=0)
  with pytest.raises(ValueError, match="--peers times the peers' network"):
    ts.Config(peers=True, image_size=224, channels=3, classes=1000)
  with pytest.raises(ValueError, match="--compute_dtypes='auto,fp16'"):
    ts.Config(compute_dtypes="auto,fp16")
  with pytest.raises(ValueError, match="--eval_batch=-1"):
    ts.Config(eval_batch=-1)
  with pytest.raises(ValueError, match="--also_methods='bonn,xnr'"):
    ts.Config(also_methods="bonn,xnr")
  with pytest.raises(ValueError, match="--method='bnn'"):
    ts.Config(method="bnn")


def test_methods_are_timed_on_the_default_backend():
  assert ts._methods_backend(["float", "packed", "auto"]) == "auto"
  assert ts._methods_backend(["float", "packed"]) == "float"


def test_bonn_is_timed_with_its_loss_terms():
  c = ts._config(ts.Config(), "bonn", "auto")
  assert c.method == "bonn"
  assert set(c.loss_terms) >= {"bayesian_kernel", "bayesian_feature"}
  assert c.bonn_kernel_decoupled
  assert "bayesian_kernel" not in ts._config(ts.Config(), "xnor", "auto").loss_terms


def test_train_steps_are_warmed_up_then_timed_interleaved(monkeypatch):
  """Every step is built and warmed up first, then one call of each in turn."""
  order = []

  class Config:  # the one field train_speed's step builder reads here
    binary_compute_dtype = "auto"

  def fake_call(cfg, method, backend, dtype=None):
    def call():
      order.append(method)
      return 0.0
    return call, Config()
  monkeypatch.setattr(ts, "train_step_call", fake_call)
  cfg = ts.Config(repeats=3, warmup=2)
  out = ts.time_training_steps(cfg, {"a": ("xnor", "auto", None),
                                     "b": ("bonn", "auto", None)})
  assert order == ["xnor"] * 2 + ["bonn"] * 2 + ["xnor", "bonn"] * 3
  assert set(out) == {"a", "b"}
  assert all(r["median_ms"] >= 0 and r["img_per_s"] > 0 for r in out.values())
