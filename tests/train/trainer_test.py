"""The training loop: every model × method trains, resume is exact, errors come early."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from bnnjax import data as data_lib
from bnnjax import packed
from bnnjax.train import checkpoint as ckpt_lib
from bnnjax.train import trainer
from configs import common

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_KWARGS = {
    "resnet18": {"width": 4},
    "wrn22": {"widths": (4, 4, 4, 8)},
    "nin": {"width_mult": 0.0625},
    "vgg7": {"width_mult": 0.0625},
    "alexnet": {"width_mult": 0.0625},
}


def tiny_config(model="resnet18", method="xnor", **kw):
  c = common.base_config()
  c.model_name = model
  c.method = method
  c.model_kwargs = TINY_KWARGS[model]
  c.batch_size = 8
  c.eval_batch_size = 16
  c.num_train_steps = 1
  c.log_every_steps = 1
  c.checkpoint_every_steps = 1
  c.progress = False
  c.update(kw)
  return c


# What differs by method in the loop is the parameter groups, loss terms and diagnostics:
# one method of each kind on one model (no binary layer; XNOR's input and kernel signs;
# a cross-filter shared scale; XNOR-Net++'s learned Γ of rank 2, which weight decay must
# skip; BONN's modulation group and both loss terms), and WRN with BONN (dropout's RNG,
# another feature size). Forward passes of every model x method are in
# tests/models/models_test.py, packing in tests/packed/, the optimizer's groups and
# decay masks in tests/train/optim_test.py, BONN's terms on every model in
# tests/train/loss_terms_test.py. They train on the float compute path, which compiles
# faster than CPU's default (packed forward, packed eval model); that the packed path
# gives the same training step and eval counts for these methods is checked in
# tests/nn/compute_test.py, and the default path runs through the trainer in
# test_short_real_run_learns_mnist, the VGG-7 runs below, reliability_test.py and
# parallel_test.py.
METHODS = ["fp", "xnor", "xnor_cf_2", "xnorpp_3", "bonn"]
CASES = [("resnet18", m) for m in METHODS] + [("wrn22", "bonn")]


@pytest.mark.parametrize("model,method", CASES)
def test_one_step_and_eval_on_mock_data(model, method, tmp_path):
  """One train step and the eval pass; the logged record is finite."""
  with tfds.testing.mock_data(num_examples=16):
    c = tiny_config(model, method, dataset="cifar10", num_test_examples=16,
                    binary_compute="float")
    results = trainer.train_and_evaluate(c, str(tmp_path))
  assert results["test/count"] == 16
  assert np.isfinite(results["test/loss"])
  records = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert np.isfinite(records[0]["loss/total"]) and records[0]["step"] == 1


def _arrays_of_checkpoint(workdir, step=None):
  return ckpt_lib.read_arrays(str(workdir), step)


def _params_of_checkpoint(workdir):
  """The state arrays of the latest checkpoint in ``workdir``."""
  flat = _arrays_of_checkpoint(workdir)
  return [flat[k] for k in sorted(flat)]


def test_resume_after_interruption_gives_identical_parameters(tmp_path, monkeypatch):
  c = tiny_config("vgg7", "xnorpp_3", dataset="mnist", num_train_examples=64,
                  num_test_examples=32, num_train_steps=6, checkpoint_every_steps=2,
                  loss_terms={"l2": {"weight": 1e-4}}, binary_compute="float")
  c.model_kwargs = {"width_mult": 0.0625, "dropout": 0.3}  # dropout: RNG state resumes too
  trainer.train_and_evaluate(c, str(tmp_path / "straight"))

  # Interrupt: the process dies right after writing the step-4 checkpoint.
  real_save = ckpt_lib.Checkpointer.save

  def save_then_die(self, step, state):
    real_save(self, step, state)
    if step == 4:
      raise KeyboardInterrupt
  monkeypatch.setattr(ckpt_lib.Checkpointer, "save", save_then_die)
  with pytest.raises(KeyboardInterrupt):
    trainer.train_and_evaluate(c, str(tmp_path / "resumed"))
  monkeypatch.setattr(ckpt_lib.Checkpointer, "save", real_save)
  results = trainer.train_and_evaluate(c, str(tmp_path / "resumed"))
  assert results["step"] == 6

  a = _params_of_checkpoint(tmp_path / "straight")
  b = _params_of_checkpoint(tmp_path / "resumed")
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  steps = [r["step"] for r in map(json.loads, open(tmp_path / "resumed" / "metrics.jsonl"))
           if "loss/total" in r]
  assert steps == [1, 2, 3, 4, 5, 6]  # the resumed run logged 5 and 6 only once


def test_load_trained_restores_the_model_that_was_evaluated(tmp_path):
  c = tiny_config("resnet18", "bonn", dataset="mnist", num_train_examples=64,
                  num_test_examples=32, num_train_steps=3, binary_compute="float")
  common.add_bonn(c, w_lr=0.01)
  results = trainer.train_and_evaluate(c, str(tmp_path))
  model, config, info = trainer.load_trained(str(tmp_path))
  assert config.method == "bonn" and info.num_classes == 10
  pipe = data_lib.make_pipeline("mnist", split=info.splits[1], batch_size=32, train=False, seed=0,
                                num_examples=32)
  batch = next(pipe.iterate(0))
  # One compiled forward (op by op, the eager model compiled a program per op).
  logits = packed.inference_fn(model)(batch["image"])
  top1 = float(np.mean(np.argmax(logits, -1) == batch["label"]))
  assert top1 == pytest.approx(results["test/top1"])
  with pytest.raises(FileNotFoundError, match="config.json"):
    trainer.load_trained(str(tmp_path / "nothing"))


def _xnor_config(**kw):
  """VGG-7 with XNOR layers on a few MNIST images, lr 0.05 (large: signs flip at every
  step), per-layer diagnostics. The learning rate is constant, so the number of steps
  is not part of the compiled program: the runs of the tests below share one."""
  return tiny_config("vgg7", "xnor", **{
      "dataset": "mnist", "num_train_examples": 64, "num_test_examples": 16,
      "num_train_steps": 2, "lr": 0.05, "schedule": "constant",
      "diagnostics_per_layer": True, **kw})


@pytest.fixture(scope="module")
def xnor_run(tmp_path_factory):
  """A finished run of ``_xnor_config()`` (2 steps, checkpoints at steps 1 and 2);
  tests read it or copy it."""
  workdir = tmp_path_factory.mktemp("xnor_run")
  trainer.train_and_evaluate(_xnor_config(), str(workdir))
  return workdir


def test_logged_flip_ratio_is_the_sign_change_between_checkpoints(xnor_run):
  from flax import nnx
  from bnnjax import nn
  logged = [json.loads(l) for l in open(xnor_run / "metrics.jsonl")][1]
  assert logged["step"] == 2
  before = nnx.state(trainer.load_trained(str(xnor_run), step=1)[0], nn.LatentWeight)
  after = nnx.state(trainer.load_trained(str(xnor_run), step=2)[0], nn.LatentWeight)
  flips = [np.sum((np.asarray(a) >= 0) != (np.asarray(b) >= 0))
           for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after))]
  total = sum(np.asarray(a).size for a in jax.tree.leaves(before))
  assert sum(flips) > 0
  assert logged["flip_ratio"] == pytest.approx(sum(flips) / total)
  per_layer = [k for k in logged if k.startswith("flip_ratio/")]
  assert len(per_layer) == len(flips)
  assert 0.0 <= logged["saturation"] <= 1.0 and logged["grad_norm"] > 0


def test_config_differences_names_the_fields_that_matter(tmp_path):
  c = tiny_config()
  assert trainer.config_differences(str(tmp_path), c) is None  # no config.json
  (tmp_path / "config.json").write_text(c.to_json_best_effort())
  d = tiny_config(lr=0.5, log_every_steps=7)  # log_every_steps may change on resume
  d.seed = 3
  assert trainer.config_differences(str(tmp_path), d) == {"lr": (c.lr, 0.5),
                                                          "seed": (0, 3)}


def test_missing_fields_take_base_config_defaults():
  import ml_collections
  base = common.base_config()
  for field in ("checkpoint_every_steps", "eval_batch_size", "keep_checkpoints"):
    assert trainer.setting(ml_collections.ConfigDict(), field) == base[field]
  assert trainer.setting(tiny_config(), "eval_batch_size") == 16


def test_resume_refuses_a_different_config(xnor_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(xnor_run, workdir)  # a finished run of _xnor_config()
  c = _xnor_config()
  c.lr = 0.5
  with pytest.raises(ValueError, match=r"different config.*lr"):
    trainer.train_and_evaluate(c, str(workdir))


@pytest.mark.parametrize("field,value,match", [
    ("model_name", "resnet50", "model_name"),
    ("method", "xnor_pp", "config.method"),
    ("optimizer", "lamb", "config.optimizer"),
    ("dataset", "not_a_dataset", "dataset"),
    ("group_size", 3, "group_size=3"),
])
def test_config_errors_before_training(tmp_path, field, value, match):
  c = tiny_config(dataset="mnist", num_train_examples=16)
  if field == "group_size":
    c.method = "xnor_cf"
  c[field] = value
  with pytest.raises(ValueError, match=match):
    trainer.train_and_evaluate(c, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
  """Corrupt data from step 4 on makes the loss NaN: the run stops, step 3 is kept."""
  real = trainer.data_lib.make_pipeline

  def corrupt_pipeline(*args, **kwargs):
    pipe = real(*args, **kwargs)
    if kwargs.get("train"):
      clean_iterate = pipe.iterate

      def iterate(start_step=0, **kw):
        for step, batch in enumerate(clean_iterate(start_step, **kw), start_step + 1):
          if step >= 4:
            batch = {**batch, "image": batch["image"] * np.nan}
          yield batch
      pipe.iterate = iterate
    return pipe
  monkeypatch.setattr(trainer.data_lib, "make_pipeline", corrupt_pipeline)
  c = _xnor_config(num_train_steps=8, checkpoint_every_steps=1, log_every_steps=2)
  with pytest.raises(FloatingPointError, match="NaN or Inf.*last good checkpoint .step 3"):
    trainer.train_and_evaluate(c, str(tmp_path))
  ck = ckpt_lib.Checkpointer(str(tmp_path))
  assert ck.latest_step() == 3
  ck.close()
  flat = _arrays_of_checkpoint(tmp_path, 3)
  assert all(np.all(np.isfinite(v)) for v in flat.values() if v.dtype.kind == "f")


def test_short_real_run_learns_mnist(tmp_path):
  """A thousand real MNIST images: test accuracy on 300 others far above the 10% of
  chance (measured 65.3% after these 60 steps of 16)."""
  c = tiny_config("resnet18", "xnor", dataset="mnist", num_train_examples=2048,
                  num_test_examples=300, eval_batch_size=100, batch_size=16,
                  num_train_steps=60, log_every_steps=30, checkpoint_every_steps=1000,
                  lr=5e-3)
  c.model_kwargs = {"width": 8}
  results = trainer.train_and_evaluate(c, str(tmp_path))
  assert results["test/top1"] > 0.5, results
  assert os.listdir(tmp_path / "tensorboard")


def test_cli_config_argument_and_override(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "experiments.run",
       "--config=configs/cf_resnet18.py:method=bw_cf,n=4",
       f"--workdir={tmp_path}", "--config.num_train_steps=2",
       "--config.num_train_examples=32", "--config.num_test_examples=32",
       "--config.model_kwargs.width=4", "--config.batch_size=8",
       "--config.eval_batch_size=32", "--config.progress=False"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "FINAL resnet18 bw_cf on mnist" in out.stdout
  saved = json.load(open(tmp_path / "config.json"))
  assert saved["group_size"] == 4 and saved["num_train_steps"] == 2
