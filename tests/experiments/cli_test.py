"""experiments.run / sweep / ptq: config and usage errors are one line without a
traceback (``--debug`` shows it), nothing is written, and ``--dry_run`` prints
commands that ``experiments.run`` accepts."""

import os
import shlex
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The persistent compilation cache is conftest's (JAX_COMPILATION_CACHE_DIR, inherited).
ENV = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
           JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
ENV.pop("BNNJAX_DEBUG", None)
TINY = ["--config.model_kwargs.width=4", "--config.batch_size=8",
        "--config.eval_batch_size=16", "--config.num_train_examples=16",
        "--config.num_test_examples=16", "--config.num_train_steps=1",
        "--config.progress=False", "--config.tensorboard=False",
        "--config.binary_compute=float"]  # compiles faster than CPU's packed forward


def cli(command, *args, env=ENV, timeout=300):
  return subprocess.run([sys.executable, "-m", f"experiments.{command}", *args],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(out, *fragments, code=2):
  assert out.returncode == code, (out.returncode, out.stderr[-3000:])
  assert "Traceback" not in out.stderr, out.stderr[-3000:]
  lines = out.stderr.strip().splitlines()
  errors = [l for l in lines if l.startswith("error: ")]
  assert len(errors) == 1, out.stderr[-3000:]
  for f in fragments:
    assert f in errors[0], errors[0]
  return errors[0]


@pytest.mark.parametrize("command,args,fragments", [
    ("run", ["--config=configs/xnor_resnet18.py", "--config.nosuch=1"],
     ["--config.nosuch is not a config field"]),
    ("run", ["--config=configs/xnor_resnet18.py", "--config.model_kwargs.widht=3"],
     ["config.model_kwargs.widht is not a config field", "Did you mean config.model_kwargs.width?"]),
    ("run", ["--config=configs/xnor_resnet18.py", "--config.batch_size=0"],
     ["config.batch_size=0; allowed values are integers >= 1"]),
    ("run", ["--config=configs/xnor_resnet18.py", "--config.keep_checkpoints=0"],
     ["config.keep_checkpoints=0"]),
    ("run", ["--config=configs/xnor_resnet18.py", "--config.binary_compute=fastest"],
     ["config.binary_compute='fastest'; allowed values are ['float', 'packed', 'auto']"]),
    ("run", ["--config=configs/nosuch.py"], ["no such file 'configs/nosuch.py'"]),
    ("run", ["--config=configs/xnor_resnet18.py:dataset=nosuchdata"],
     ["dataset='nosuchdata'"]),
    ("sweep", ["--config=configs/xnorpp_resnet18.py", "--config.lr=inf"],
     ["config.lr=inf; allowed values are finite numbers > 0"]),
    ("sweep", ["--config=configs/xnorpp_resnet18.py", "--config.nosuch=1"],
     ["--config.nosuch is not a config field"]),
    ("ptq", ["--config=configs/ptq_resnet18.py", "--config.method=xnor"],
     ["config.method='xnor'; allowed values are ['fp']"]),
    ("ptq", ["--config=configs/ptq_resnet18.py", "--config.ptq.bits=(8,4,2)"],
     ["config.ptq.grouping_bits=3"]),
])
def test_config_errors_are_one_line_and_write_nothing(tmp_path, command, args, fragments):
  workdir = tmp_path / "w"
  extra = [f"--workdir={workdir}"]
  t = time.perf_counter()
  out = cli(command, *args, *extra)
  assert_one_line_error(out, *fragments)
  assert not workdir.exists()
  assert time.perf_counter() - t < 120  # refused before any training


def test_debug_shows_the_traceback(tmp_path):
  args = ["--config=configs/xnor_resnet18.py", "--config.batch_size=0",
          f"--workdir={tmp_path / 'w'}"]
  out = cli("run", *args, "--debug")
  assert out.returncode != 0 and "Traceback" in out.stderr
  out = cli("run", *args, env=dict(ENV, BNNJAX_DEBUG="1"))
  assert out.returncode != 0 and "Traceback" in out.stderr


def test_workdir_naming_a_file_is_one_line(tmp_path):
  path = tmp_path / "f"
  path.write_text("x")
  out = cli("run", "--config=configs/xnor_resnet18.py", f"--workdir={path}")
  assert_one_line_error(out, "is a file, not a directory")


def test_dry_run_commands_are_accepted_by_run(tmp_path):
  """The printed commands are what ``experiments.run`` accepts: the xnor point (which
  unsets gamma_case: --config.gamma_case=None) and a Γ-case point each train one step;
  all five have the same form."""
  out = cli("sweep", "--config=configs/xnorpp_resnet18.py", f"--workdir={tmp_path}",
            "--dry_run", *TINY)
  assert out.returncode == 0, out.stderr[-3000:]
  commands = [shlex.split(l) for l in out.stdout.strip().splitlines()]
  assert len(commands) == 5 and "--config.gamma_case=None" in commands[0]
  for argv in commands:
    assert argv[:3] == ["python", "-m", "experiments.run"]
    assert f"--workdir={tmp_path}/" in " ".join(argv)
    assert all(t in argv for t in TINY)
  procs = [subprocess.Popen([sys.executable, *argv[1:]], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for argv in (commands[0], commands[-1])]
  for proc in procs:
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, (proc.args, stderr[-3000:])
    assert "FINAL resnet18" in stdout and "1 steps" in stdout


def test_every_command_module_imports_into_one_process():
  """Tests and notebooks import several commands at once; their flags (--config,
  --workdir, ...) are defined only when a module runs as a command, so the imports must
  not clash (absl's DuplicateFlagError broke CI's test collection once). Run in a fresh
  interpreter, in both orders, so that an earlier test's imports cannot hide a clash."""
  for order in (("run", "sweep", "ptq", "export"), ("export", "ptq", "sweep", "run")):
    code = "".join(f"import experiments.{m}\n" for m in order)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
