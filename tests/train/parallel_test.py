"""Data-parallel training gives the single-device result: 8 CPU devices, 2 processes.

Each run is the real command (``python -m experiments.run``) in a subprocess, since a
process's device count is fixed when JAX starts.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from bnnjax.train import checkpoint as ckpt_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A tiny VGG-7 with batch norm (its statistics must be over the global batch) and XNOR
# layers (its convs train with the packed forward on CPU); 40 test examples in batches
# of 16 exercise the padded, masked last batch. (VGG-7 rather than ResNet-18: the
# four runs compile about half as long.)
# SGD, not Adam: some biases have a gradient that is exactly 0 in exact arithmetic (a
# per-channel shift that the next train-mode batch norm removes); Adam rescales the
# float noise of that 0 into lr-sized steps, which differ with the summation order.
TINY = ["--config=configs/cf_vgg7.py:method=xnor", "--config.model_kwargs.width_mult=0.0625",
        "--config.num_train_steps=6", "--config.batch_size=16",
        "--config.eval_batch_size=16", "--config.num_train_examples=96",
        "--config.num_test_examples=40", "--config.log_every_steps=1",
        "--config.checkpoint_every_steps=3", "--config.progress=False",
        "--config.tensorboard=False", "--config.optimizer=sgd", "--config.lr=0.05"]


def _env(devices: int) -> dict:
  # The persistent compilation cache is conftest's (JAX_COMPILATION_CACHE_DIR, inherited).
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={devices}").strip()
  return env


def _launch(workdir, devices=1, extra=()):
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.run", *TINY, f"--workdir={workdir}", *extra],
      cwd=REPO, env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)


def _finish(proc, timeout=600):
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out[-3000:]
  return out


def _losses(workdir):
  records = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  return [r["loss/total"] for r in records if "loss/total" in r]


def _params(workdir):
  flat = ckpt_lib.read_arrays(str(workdir))
  return [flat[k] for k in sorted(flat)]


def _results(workdir):
  return json.load(open(os.path.join(workdir, "results.json")))


def _assert_same_run(a, b):
  np.testing.assert_allclose(_losses(a), _losses(b), rtol=1e-4, atol=1e-5)
  pa, pb = _params(a), _params(b)
  assert len(pa) == len(pb)
  for x, y in zip(pa, pb):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
  ra, rb = _results(a), _results(b)
  assert ra["test/count"] == rb["test/count"] == 40
  assert ra["test/top1"] == pytest.approx(rb["test/top1"])


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("dp") / "one_device"
  _finish(_launch(workdir, devices=1))
  return workdir


@pytest.fixture(scope="module")
def eight_device_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("dp") / "eight_devices"
  out = _finish(_launch(workdir, devices=8))
  assert "FINAL" in out
  return workdir


def test_eight_devices_train_like_one(one_device_run, eight_device_run):
  _assert_same_run(one_device_run, eight_device_run)


def test_checkpoint_from_eight_devices_resumes_on_one(one_device_run, eight_device_run,
                                                      tmp_path):
  """Checkpoints hold plain arrays: a run interrupted on 8 devices finishes on 1."""
  workdir = tmp_path / "moved"
  shutil.copytree(eight_device_run, workdir)
  shutil.rmtree(workdir / "checkpoints" / "6")  # as if it died after step 3's
  os.remove(workdir / "results.json")
  out = _finish(_launch(workdir, devices=1))
  assert "Resuming from the checkpoint of step 3" in out
  for x, y in zip(_params(one_device_run), _params(workdir)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
  assert _results(workdir)["test/top1"] == pytest.approx(
      _results(one_device_run)["test/top1"])


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_on_localhost_train_like_one(one_device_run, tmp_path):
  """``jax.distributed`` over localhost: 2 processes x 2 devices, shared workdir."""
  workdir = tmp_path / "two_proc"
  port = _free_port()
  procs = [_launch(workdir, devices=2, extra=[
      f"--coordinator_address=localhost:{port}", "--num_processes=2",
      f"--process_id={i}"]) for i in range(2)]
  outs = [_finish(p) for p in procs]
  assert "FINAL" in outs[0] and "FINAL" not in outs[1]  # only process 0 reports
  _assert_same_run(one_device_run, workdir)
