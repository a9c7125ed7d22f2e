"""Trustworthy runs (issue 15): validation before anything is written, one process per
workdir, checkpoints that survive faults, signals that save, clean CLI errors."""

import glob
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import types

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from bnnjax.train import checkpoint as ckpt_lib
from bnnjax.train import trainer
from bnnjax.train import validation
from bnnjax.train import workdir_lock
from configs import common

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The subprocesses share the tests' persistent compilation cache (tests/conftest.py
# sets JAX_COMPILATION_CACHE_DIR, which they inherit): the first run compiles, the
# others load the programs.
ENV = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
           JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

# Every run of this file trains the same program: the same model, data shapes and
# optimizer, with a constant learning rate so that the number of steps (a constant of
# the cosine schedule) is not part of it. The first run compiles it, the others (the
# CLI's subprocesses too) load it from the persistent compilation cache. (Resuming
# under the cosine schedule is checked bit for bit in trainer_test.py.)
TINY_CONFIG_FILE = '''
import time

from configs import common


def _slow_steps(seconds):
  # A test hook: each train step also sleeps, so a signal can land mid-run.
  from bnnjax.train import trainer
  real = trainer.make_train_step

  def make(*a, **k):
    step = real(*a, **k)
    def slow(*args):
      time.sleep(seconds)
      return step(*args)
    return slow
  trainer.make_train_step = make


def get_config(arg=None):
  args = common.parse_arg(arg, steps=6, slow=0.0)
  if args.slow:
    _slow_steps(args.slow)
  c = common.base_config()
  c.model_name = "vgg7"
  c.method = "xnor"
  c.model_kwargs.width_mult = 0.0625
  c.dataset = "mnist"
  c.batch_size = 8
  c.eval_batch_size = 16
  c.num_train_examples = 64
  c.num_test_examples = 16
  c.num_train_steps = args.steps
  c.schedule = "constant"
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.keep_checkpoints = 3
  c.progress = False
  c.tensorboard = False
  return c
'''


def tiny(**kw):
  c = common.base_config()
  c.model_name, c.method = "vgg7", "xnor"
  c.model_kwargs = {"width_mult": 0.0625}
  c.dataset = "mnist"
  c.batch_size, c.eval_batch_size = 8, 16
  c.num_train_examples, c.num_test_examples = 64, 16
  c.num_train_steps = 3
  c.schedule = "constant"  # the program of TINY_CONFIG_FILE's runs (above)
  c.log_every_steps, c.checkpoint_every_steps, c.keep_checkpoints = 1, 1, 3
  c.progress, c.tensorboard = False, False
  c.update(kw)
  return c


def checkpoint_arrays(workdir, step=None):
  """Every array of a checkpoint, by item and name."""
  return ckpt_lib.read_arrays(str(workdir), step)


def assert_same_arrays(a, b):
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --------------------------------------------------------------------- validation
@pytest.mark.parametrize("field,value,match", [
    ("batch_size", 0, r"config.batch_size=0; allowed values are integers >= 1"),
    ("batch_size", -4, r"config.batch_size=-4"),
    ("eval_batch_size", 0, r"config.eval_batch_size=0"),
    ("num_train_examples", -10, r"num_train_examples=-10"),
    ("num_test_examples", 0, r"num_test_examples=0.*or None for the whole split"),
    ("log_every_steps", 0, r"config.log_every_steps=0"),
    ("checkpoint_every_steps", 0, r"config.checkpoint_every_steps=0"),
    ("keep_checkpoints", 0, r"config.keep_checkpoints=0; allowed values are integers >= 1"),
    ("lr", float("inf"), r"config.lr=inf; allowed values are finite numbers > 0"),
    ("lr", float("nan"), r"config.lr=nan"),
    ("weight_decay", -1e-4, r"config.weight_decay=-0.0001.*>= 0"),
    ("decay_factor", 2.0, r"config.decay_factor=2.0.*<= 1"),
    ("num_epochs", float("inf"), r"config.num_epochs=inf"),
    ("batch_size", "8", r"config.batch_size='8'; allowed values are integers"),
    ("progress", 1, r"config.progress=1; allowed values are True or False"),
    ("binary_compute", "fast", r"config.binary_compute='fast'; allowed values are \['float'"),
    ("train_float_precision", "tf32",
     r"config.train_float_precision='tf32'; allowed values are \['auto', 'highest'"),
    ("lrr", 0.1, r"config.lrr is not a config field. Did you mean config.lr\?"),
])
def test_bad_values_are_refused_before_anything_is_written(tmp_path, field, value, match):
  # A plain ConfigDict (as json or a config file may give): types are not enforced.
  c = ml_collections.ConfigDict({**tiny().to_dict(), field: value})
  workdir = tmp_path / "run"
  with pytest.raises(validation.ConfigError, match=match):
    trainer.train_and_evaluate(c, str(workdir))
  assert not workdir.exists()


def test_no_training_step_and_divisibility_are_config_errors(tmp_path):
  c = tiny(num_train_steps=None, num_epochs=0.01)
  with pytest.raises(validation.ConfigError, match="num_epochs=0.01 gives no training step"):
    trainer.train_and_evaluate(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_workdir_naming_a_file_is_refused(tmp_path):
  path = tmp_path / "afile"
  path.write_text("mine")
  with pytest.raises(validation.ConfigError, match="is a file, not a directory"):
    trainer.train_and_evaluate(tiny(), str(path))
  assert path.read_text() == "mine"


def test_a_run_failing_before_its_first_checkpoint_leaves_no_config_json(tmp_path,
                                                                         monkeypatch):
  def broken(*a, **k):
    raise RuntimeError("out of memory (simulated)")
  monkeypatch.setattr(trainer, "make_train_step", broken)
  with pytest.raises(RuntimeError, match="simulated"):
    trainer.train_and_evaluate(tiny(lr=0.5), str(tmp_path))
  assert not (tmp_path / "config.json").exists()
  monkeypatch.undo()
  # The corrected config is not refused as "a different config".
  results = trainer.train_and_evaluate(tiny(num_train_steps=1), str(tmp_path))
  assert results["step"] == 1


# ------------------------------------------------------------------- workdir lock
HOLD_LOCK = textwrap.dedent("""
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("wl", sys.argv[1])
    wl = importlib.util.module_from_spec(spec); spec.loader.exec_module(wl)
    wl.WorkdirLock(sys.argv[2]).acquire()
    print("held", flush=True)
    time.sleep(120)
""")


def _hold_lock_in_subprocess(workdir):
  proc = subprocess.Popen(
      [sys.executable, "-c", HOLD_LOCK, workdir_lock.__file__, str(workdir)],
      stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "held"
  return proc


def test_a_second_run_on_a_locked_workdir_is_refused_at_once(tmp_path):
  proc = _hold_lock_in_subprocess(tmp_path)
  try:
    t = time.perf_counter()
    with pytest.raises(workdir_lock.WorkdirBusy, match=rf"in use by another run \(pid {proc.pid} "):
      trainer.train_and_evaluate(tiny(), str(tmp_path))
    assert time.perf_counter() - t < 30
    assert not (tmp_path / "config.json").exists()
  finally:
    proc.kill()
    proc.wait()
  # Killed: the kernel released the lock; the stale holder is named and replaced.
  lock = workdir_lock.WorkdirLock(str(tmp_path)).acquire()
  assert lock.previous is not None and f"pid {proc.pid}" in lock.previous
  with workdir_lock.WorkdirLock(str(tmp_path)):  # re-entrant in one process
    pass
  lock.release()
  assert (tmp_path / workdir_lock.LOCK_NAME).read_text() == ""  # released cleanly
  with workdir_lock.WorkdirLock(str(tmp_path)) as again:
    assert again.previous is None


# --------------------------------------------------------------------- checkpoints
def test_checkpoints_hold_named_items_and_the_final_state_with_keep_1(tmp_path):
  trainer.train_and_evaluate(tiny(keep_checkpoints=1), str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3"]
  assert set(ckpt_lib.ITEMS) <= set(os.listdir(tmp_path / "checkpoints" / "3"))
  arrays = checkpoint_arrays(tmp_path)
  assert "params['ops']['0']['conv']['kernel']" in arrays
  assert int(arrays["step['value']"]) == 3
  assert any(k.startswith("opt_state") and "['mu']" in k for k in arrays)


def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
  c = tiny()
  trainer.train_and_evaluate(c, str(tmp_path))
  expected = checkpoint_arrays(tmp_path)
  os.remove(tmp_path / "results.json")
  files = glob.glob(str(tmp_path / "checkpoints" / "3" / "params" / "**" / "d" / "*"),
                    recursive=True)
  biggest = max(files, key=os.path.getsize)
  os.truncate(biggest, 100)
  capsys.readouterr()
  trainer.train_and_evaluate(c, str(tmp_path))
  out = capsys.readouterr()
  lines = [l for l in out.out.splitlines() if "could not be read" in l]
  assert len(lines) == 1 and "step 3" in lines[0] and "trying step 2." in lines[0]
  assert "Traceback" not in out.err and "Event loop is closed" not in out.err
  assert "Resuming from the checkpoint of step 2" in out.out
  assert os.path.exists(tmp_path / "checkpoints_unreadable" / "3")  # kept, not deleted
  assert_same_arrays(checkpoint_arrays(tmp_path), expected)  # step 3 recomputed


def test_closed_loop_tracebacks_are_dropped_even_interleaved():
  """After a failed restore, tensorstore's reads still in flight each print a traceback
  ending in "Event loop is closed", several threads at once (seen under load: the
  lines of two tracebacks interleaved). They go; other output stays, but for a
  "Traceback" header line, which cannot be told apart once lines interleave."""
  one = ['Traceback (most recent call last):\n',
         '  File "/py/lib/python3.11/asyncio/base_events.py", line 806, in call_soon_threadsafe\n',
         '    self._check_closed()\n',
         '  File "/py/lib/python3.11/asyncio/base_events.py", line 519, in _check_closed\n',
         "    raise RuntimeError('Event loop is closed')\n",
         'RuntimeError: Event loop is closed\n']
  interleaved = [l for pair in zip(one, one) for l in pair]
  other = ["W1129 a warning the user should see\n",
           "Traceback (most recent call last):\n", '  File "mine.py", line 1, in f\n',
           "KeyError: 'x'\n"]
  text = "".join(one + interleaved[:5] + other[:1] + interleaved[5:] + other[1:])
  assert ckpt_lib._drop_closed_loop_tracebacks(text) == "".join(other[:1] + other[2:])
  assert ckpt_lib._drop_closed_loop_tracebacks("".join(other)) == "".join(other)


def test_closed_loop_callbacks_are_dropped_whenever_they_report(monkeypatch):
  """Those tracebacks come through sys.unraisablehook, at any time after a failed
  restore: the hook drops exactly that error and passes every other one on."""
  seen = []
  monkeypatch.setattr(sys, "unraisablehook", seen.append)
  ckpt_lib._ignore_closed_loop_callbacks()
  ckpt_lib._ignore_closed_loop_callbacks()  # installed once
  closed = types.SimpleNamespace(exc_value=RuntimeError("Event loop is closed"))
  other = types.SimpleNamespace(exc_value=RuntimeError("disk full"))
  sys.unraisablehook(closed)
  sys.unraisablehook(other)
  assert seen == [other]


def test_a_save_interrupted_by_a_kill_is_removed_by_the_run_not_by_a_reader(tmp_path):
  """A SIGKILL during an asynchronous save leaves orbax's temporary directory (seen:
  ``checkpoints/3.orbax-checkpoint-tmp``); the next run in the workdir (the lock's
  holder) removes it, a reader of the workdir leaves it (it may be a save in
  progress)."""
  c = tiny(num_train_steps=2)
  trainer.train_and_evaluate(c, str(tmp_path))
  stale = tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp"
  shutil.copytree(tmp_path / "checkpoints" / "2", stale)
  ckpt_lib.Checkpointer(str(tmp_path)).close()
  trainer.load_trained(str(tmp_path))
  assert stale.exists()
  trainer.train_and_evaluate(c, str(tmp_path))  # finished: re-evaluates only
  assert not stale.exists()
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]


def test_checkpoints_of_the_previous_format_still_restore(tmp_path):
  c = tiny()
  setup = trainer.set_up(c)
  # The earlier release's format: one "default" item of numbered host arrays.
  manager = ocp.CheckpointManager(str(tmp_path / "checkpoints"),
                                  options=ocp.CheckpointManagerOptions(create=True))
  state = setup.state.replace(step=setup.state.step + 1)
  manager.save(1, args=ocp.args.StandardSave(ckpt_lib._legacy_flat(state)))
  manager.wait_until_finished()
  manager.close()
  ck = ckpt_lib.Checkpointer(str(tmp_path))
  restored = ck.restore(setup.state)
  ck.close()
  assert int(restored.step) == 1
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(restored.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # and training resumes from it, writing the new format from then on
  with open(tmp_path / "config.json", "w") as f:
    f.write(c.to_json_best_effort())
  assert trainer.train_and_evaluate(c, str(tmp_path))["step"] == 3
  assert "params" in os.listdir(tmp_path / "checkpoints" / "3")


def test_rerunning_a_finished_run_adds_no_records(tmp_path):
  c = tiny()
  first = trainer.train_and_evaluate(c, str(tmp_path))
  before = (tmp_path / "metrics.jsonl").read_text()
  again = trainer.train_and_evaluate(c, str(tmp_path))
  assert (tmp_path / "metrics.jsonl").read_text() == before
  assert again == first


# ------------------------------------------------------------ signals and kills
def _start(config_file, workdir, steps, slow=0.0):
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.run",
       f"--config={config_file}:steps={steps}" + (f",slow={slow}" if slow else ""),
       f"--workdir={workdir}"], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


def _logged_steps(workdir):
  try:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      return [json.loads(l)["step"] for l in f if l.endswith("\n") and "loss/total" in l]
  except (OSError, ValueError):
    return []


def _config_file_module(path):
  """The config file at ``path``, imported (for the runs this process trains itself)."""
  spec = importlib.util.spec_from_file_location("tiny_config_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_sigkill_sigterm_sigint_at_a_random_step_resume_bit_identically(tmp_path, capsys):
  """Kills the CLI at a random step with each signal, resumes, and compares every
  array of the final checkpoint with an uninterrupted run's.

  Only the runs that are killed need their own process (the CLI's); the uninterrupted
  run and the resumptions run the same config in this process (the CLI only parses
  the flags and calls train_and_evaluate), with the same compiled program."""
  config_file = tmp_path / "tiny_config.py"
  config_file.write_text(TINY_CONFIG_FILE)
  steps = 30
  config = _config_file_module(config_file).get_config(f"steps={steps}")
  rng = random.Random()
  kills = {sig: rng.randrange(5, 20) for sig in (signal.SIGKILL, signal.SIGTERM,
                                                 signal.SIGINT)}
  trainer.train_and_evaluate(config, str(tmp_path / "straight"))  # compiles if needed
  expected = checkpoint_arrays(tmp_path / "straight")
  procs = {sig: _start(config_file, tmp_path / sig.name, steps, slow=0.05)
           for sig in kills}
  outputs = {}
  for sig, proc in procs.items():
    deadline = time.time() + 300
    while proc.poll() is None and max(_logged_steps(tmp_path / sig.name), default=0) < kills[sig]:
      assert time.time() < deadline
      time.sleep(0.02)
    assert proc.poll() is None, f"{sig.name}: the run ended before step {kills[sig]}"
    proc.send_signal(sig)
  for sig, proc in procs.items():
    outputs[sig] = proc.communicate(timeout=300)

  for sig in (signal.SIGTERM, signal.SIGINT):
    out, err = outputs[sig]
    assert procs[sig].returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    kept = [l for l in err.splitlines() if l.startswith(f"Stopped by {sig.name} at step")]
    assert len(kept) == 1, err[-2000:]
    step = int(kept[0].split(" at step ")[1].split()[0])
    assert step >= kills[sig] and f"the checkpoint of step {step} is kept" in kept[0]
    assert ckpt_lib.Checkpointer(str(tmp_path / sig.name)).latest_step() == step
  assert procs[signal.SIGKILL].returncode == -signal.SIGKILL

  for sig in kills:
    capsys.readouterr()
    results = trainer.train_and_evaluate(config, str(tmp_path / sig.name))
    assert results["step"] == steps
    assert "Resuming from the checkpoint of step" in capsys.readouterr().out
    assert_same_arrays(checkpoint_arrays(tmp_path / sig.name), expected)
    assert _logged_steps(tmp_path / sig.name) == list(range(1, steps + 1)), sig.name
