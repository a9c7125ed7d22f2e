"""Every bad input and fault of issue 15, tried through the command line as a user would,
with the message each one gets now and whether it behaves as the README's Reliability
section says (refused before anything is written, one line, no traceback, nothing lost).

    python -m benchmarks.reliability_probe [--only=ID,...] [--out=benchmarks/results]

Each probe runs ``experiments.run`` / ``sweep`` / ``ptq`` (or a short Python snippet for
the library calls) in a fresh subprocess on a tiny Bi-Real ResNet-18 (width 4, 16 MNIST
images, float compute so that it compiles quickly), in a temporary directory, and checks
its own condition. Writes ``reliability_probe.{json,md}``: per probe the issue item, what
was done, the exit status, the message lines (``error:``, ``Note:``, ``Stopped by``,
``Resuming``, the unreadable-checkpoint line, ``FINAL``), the number of tracebacks, and
the check's outcome. Exit status 1 when a check fails. About 8 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import glob
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Sequence

from benchmarks import cli as bench_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config.model_kwargs.width=4", "--config.batch_size=8",
        "--config.eval_batch_size=16", "--config.num_train_examples=16",
        "--config.num_test_examples=16", "--config.progress=False",
        "--config.tensorboard=False", "--config.binary_compute=float"]
RUN_CONFIG = "--config=configs/xnor_resnet18.py"
# The lines a user is meant to read; everything else (absl / orbax warnings) is noise.
MESSAGE = re.compile(r"^(error:|Note:|Stopped by|Resuming|FINAL|Checkpoint|Sweep|"
                     r"python -m experiments\.run|.*could not be read|.*in use by)")


@dataclasses.dataclass
class Outcome:
  rc: int | None
  out: str
  err: str
  seconds: float

  @property
  def tracebacks(self) -> int:
    return self.err.count("Traceback (most recent call last)")

  def messages(self) -> list[str]:
    lines = (self.out + "\n" + self.err).splitlines()
    return [l.strip() for l in lines if MESSAGE.match(l.strip())]


@dataclasses.dataclass
class Probe:
  id: str
  item: str  # the item number ("+" for the probes added here)
  what: str
  fn: Callable[["Env"], tuple[Outcome, bool, str]]


class Env:
  """A temporary directory, a shared compilation cache, and the CLI runners."""

  def __init__(self, root: str):
    self.root = root
    self.env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
                    JAX_COMPILATION_CACHE_DIR=os.path.join(root, "jax_cache"),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    self.env.pop("BNNJAX_DEBUG", None)

  def path(self, name: str) -> str:
    return os.path.join(self.root, name)

  def argv(self, command: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"experiments.{command}", *args]

  def _call(self, argv: list[str], timeout: float) -> Outcome:
    t = time.perf_counter()
    p = subprocess.run(argv, cwd=REPO, env=self.env, capture_output=True, text=True,
                       timeout=timeout)
    return Outcome(p.returncode, p.stdout, p.stderr, time.perf_counter() - t)

  def run(self, command: str, *args: str, timeout: float = 600) -> Outcome:
    return self._call(self.argv(command, *args), timeout)

  def python(self, code: str, timeout: float = 300) -> Outcome:
    return self._call([sys.executable, "-c", code], timeout)

  def start(self, command: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(self.argv(command, *args), cwd=REPO, env=self.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, started: float, timeout: float = 600) -> Outcome:
  out, err = proc.communicate(timeout=timeout)
  return Outcome(proc.returncode, out, err, time.perf_counter() - started)


def logged_steps(workdir: str) -> list[int]:
  try:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      return [json.loads(l)["step"] for l in f if l.endswith("\n") and "loss/total" in l]
  except (OSError, ValueError):
    return []


def test_records(workdir: str) -> int:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return sum("test/top1" in l for l in f)


def truncate_checkpoint(workdir: str, step: int) -> None:
  """Truncates the largest parameter file of checkpoint ``step`` to 100 bytes."""
  files = glob.glob(os.path.join(workdir, "checkpoints", str(step), "params", "**", "d",
                                 "*"), recursive=True)
  os.truncate(max(files, key=os.path.getsize), 100)


def wait_for(cond: Callable[[], bool], proc: subprocess.Popen, timeout: float = 300):
  deadline = time.time() + timeout
  while not cond():
    if proc.poll() is not None:
      raise RuntimeError(f"the run ended early (rc {proc.returncode}): "
                         f"{proc.stderr.read()[-2000:]}")
    if time.time() > deadline:
      raise RuntimeError("timed out waiting")
    time.sleep(0.01)


def verdict(o: Outcome, checks: dict[str, bool], success: str) -> tuple[Outcome, bool, str]:
  """``(o, ok, detail)``: ``detail`` names the failed checks, or is ``success``."""
  failed = [k for k, v in checks.items() if not v]
  return o, not failed, "; ".join(failed) or success


def refused(env: Env, command: str, *args: str, config: str = RUN_CONFIG,
            fragment: str = "") -> tuple[Outcome, bool, str]:
  """A config / usage error: status 2, one ``error:`` line containing ``fragment``, no
  traceback, no workdir, within a minute (before any training)."""
  workdir = env.path(f"refused_{len(os.listdir(env.root))}")
  o = env.run(command, *([config] if config else []), *args, f"--workdir={workdir}")
  errors = [l for l in o.err.splitlines() if l.startswith("error: ")]
  checks = {"status 2": o.rc == 2, "one error line": len(errors) == 1,
            "no traceback": o.tracebacks == 0, "no workdir": not os.path.exists(workdir),
            "names the field": bool(errors) and fragment in errors[0],
            "< 60 s": o.seconds < 60}
  return verdict(o, checks, f"refused in {o.seconds:.1f} s, nothing written")


def field(name: str, value: str, fragment: str | None = None, command: str = "run",
          config: str = RUN_CONFIG):
  return lambda env: refused(env, command, *TINY, f"--config.{name}={value}",
                             config=config, fragment=fragment or f"config.{name}")


# ---------------------------------------------------------------------- the probes
def two_runs(env: Env, different: bool) -> tuple[Outcome, bool, str]:
  """A run on a new workdir, then the same command (or another lr) started while it
  trains: refused at once naming the first; the first's records are not doubled."""
  workdir = env.path("twice_diff" if different else "twice_same")
  args = [RUN_CONFIG, *TINY, "--config.num_train_steps=100000",
          "--config.checkpoint_every_steps=50", f"--workdir={workdir}"]
  first = env.start("run", *args)
  try:
    wait_for(lambda: len(logged_steps(workdir)) > 0, first)
    second = env.run("run", *args, *(["--config.lr=0.01"] if different else []))
  finally:
    first.send_signal(signal.SIGTERM)
    first_out = finish(first, 0)
  steps = logged_steps(workdir)
  checks = {"second refused (status 3)": second.rc == 3,
            "names the first's pid": f"pid {first.pid}" in second.err,
            "no traceback": second.tracebacks == 0,
            "at once (< 30 s)": second.seconds < 30,
            "records not doubled": len(steps) == len(set(steps)),
            "first stopped cleanly": first_out.rc == 128 + signal.SIGTERM}
  return verdict(second, checks, (
      f"second refused in {second.seconds:.1f} s; first trained {len(steps)} records, "
      "none doubled"))


def corrupted_latest(env: Env) -> tuple[Outcome, bool, str]:
  """Checkpoints 40, 50, 60 with a file of 60 truncated: resumes from 50 with one line."""
  workdir = env.path("corrupt")
  args = [RUN_CONFIG, *TINY, "--config.num_train_steps=60",
          "--config.checkpoint_every_steps=10", "--config.keep_checkpoints=3",
          f"--workdir={workdir}"]
  first = env.run("run", *args)
  assert first.rc == 0, first.err[-2000:]
  os.remove(os.path.join(workdir, "results.json"))
  truncate_checkpoint(workdir, 60)
  o = env.run("run", *args)
  unreadable = [l for l in o.messages() if "could not be read" in l]
  checks = {"status 0": o.rc == 0, "one line for the bad checkpoint": len(unreadable) == 1,
            "falls back to 50": "Resuming from the checkpoint of step 50" in o.out,
            "no traceback": o.tracebacks == 0,
            "bad one set aside": os.path.isdir(os.path.join(
                workdir, "checkpoints_unreadable", "60")),
            "final state kept": os.path.isdir(os.path.join(workdir, "checkpoints", "60"))}
  return verdict(o, checks, "resumed from 50, trained to 60 again")


def fix_after_failure(env: Env) -> tuple[Outcome, bool, str]:
  """batch_size=-4 refused, then the corrected command on the same workdir trains."""
  workdir = env.path("fix")
  bad = env.run("run", RUN_CONFIG, *TINY, "--config.batch_size=-4",
                "--config.num_train_steps=2", f"--workdir={workdir}")
  o = env.run("run", RUN_CONFIG, *TINY, "--config.num_train_steps=2",
              f"--workdir={workdir}")
  checks = {"bad one refused": bad.rc == 2, "fix trains": o.rc == 0 and "FINAL" in o.out,
            "no 'different config'": "different config" not in o.err}
  return verdict(o, checks, "the corrected command ran to FINAL")


def signal_at_step(env: Env, sig: signal.Signals, at_save: bool) -> tuple[Outcome, bool, str]:
  """``sig`` at a step (or while the asynchronous checkpoint of a step is being written):
  one line naming the kept step, status 128 + sig; the same command resumes from it."""
  workdir = env.path(f"{sig.name}_{'save' if at_save else 'step'}")
  args = [RUN_CONFIG, *TINY, "--config.num_train_steps=100000",
          "--config.checkpoint_every_steps=" + ("5" if at_save else "1000"),
          f"--workdir={workdir}"]
  proc = env.start("run", *args)
  t = time.perf_counter()
  ckpts = os.path.join(workdir, "checkpoints")
  if at_save:  # orbax writes a step into a temporary directory first
    wait_for(lambda: any("tmp" in n for n in (os.listdir(ckpts) if os.path.isdir(ckpts)
                                               else [])), proc)
  else:
    wait_for(lambda: max(logged_steps(workdir), default=0) >= 7, proc)
  proc.send_signal(sig)
  sent = time.perf_counter()
  o = finish(proc, t, timeout=120)
  stop_s = time.perf_counter() - sent
  m = re.search(r"checkpoint of step (\d+) is kept", o.out + o.err)
  kept = int(m.group(1)) if m else None
  resumed = env.start("run", *args)
  timer = threading.Timer(300, resumed.kill)  # readline below cannot hang the probe
  timer.start()
  try:
    line = resumed.stdout.readline()
    while line and not line.startswith("Resuming"):
      line = resumed.stdout.readline()
  finally:
    timer.cancel()
    resumed.send_signal(signal.SIGTERM)
    finish(resumed, 0, timeout=120)
  checks = {f"status {128 + sig}": o.rc == 128 + sig, "names the kept step": kept is not None,
            "no traceback": o.tracebacks == 0, "stops within 30 s": stop_s < 30,
            "resumes from it": kept is not None
            and line.strip().startswith(f"Resuming from the checkpoint of step {kept} ")}
  return verdict(o, checks, (
      f"stopped {stop_s:.1f} s after the signal; the same command resumed from {kept}"))


def sigkill_then_rerun(env: Env) -> tuple[Outcome, bool, str]:
  """SIGKILL mid-run: the kernel frees the lock; the rerun names the killed holder and
  resumes from its last checkpoint."""
  workdir = env.path("sigkill")
  args = [RUN_CONFIG, *TINY, "--config.num_train_steps=40",
          "--config.checkpoint_every_steps=10", f"--workdir={workdir}"]
  proc = env.start("run", *args)
  wait_for(lambda: max(logged_steps(workdir), default=0) >= 25, proc)
  proc.kill()
  proc.communicate()
  ckpts = os.path.join(workdir, "checkpoints")
  kept = max(int(n) for n in os.listdir(ckpts) if n.isdigit())  # finished writing
  o = env.run("run", *args)
  steps = logged_steps(workdir)
  checks = {"status 0": o.rc == 0, "stale lock named": "ended without releasing" in o.out,
            "resumes from the last written": f"checkpoint of step {kept} in" in o.out,
            "no interrupted save left": not [n for n in os.listdir(ckpts) if "tmp" in n],
            "records not doubled": len(steps) == len(set(steps))}
  return verdict(o, checks, (
      f"took the lock over, resumed from {kept} (the last checkpoint written before the "
      "kill at step >= 25), no doubled record"))


def rerun_finished(env: Env) -> tuple[Outcome, bool, str]:
  workdir = env.path("finished")
  args = [RUN_CONFIG, *TINY, "--config.num_train_steps=2", f"--workdir={workdir}"]
  env.run("run", *args)
  before = test_records(workdir)
  o = env.run("run", *args)
  after = test_records(workdir)
  ok = o.rc == 0 and before == after == 1
  return o, ok, f"test records in metrics.jsonl: {before} before, {after} after"


def dry_run_commands(env: Env) -> tuple[Outcome, bool, str]:
  workdir = env.path("sweep")
  o = env.run("sweep", "--config=configs/xnorpp_resnet18.py", f"--workdir={workdir}",
              "--dry_run", *TINY, "--config.num_train_steps=1")
  commands = [shlex.split(l) for l in o.out.splitlines() if l.startswith("python -m")]
  results = []
  for argv in commands[:1] + commands[-1:]:  # the xnor point (gamma_case=None) and case 4
    r = env.run(argv[2].split(".", 1)[1], *argv[3:])
    results.append(r.rc == 0 and "FINAL" in r.out)
  ok = o.rc == 0 and len(commands) == 5 and all(results)
  shown = Outcome(o.rc, "\n".join(" ".join(c) for c in commands[:1]), o.err, o.seconds)
  return shown, ok, (f"{len(commands)} commands; the xnor point's and the last one's "
                     f"ran to FINAL: {results}")


def ptq_docstring_example(env: Env) -> tuple[Outcome, bool, str]:
  workdir = env.path("ptq_doc")
  o = env.run("ptq", "--config=configs/ptq_resnet18.py", "--config.ptq.bits=(8,4,3)",
              "--config.num_train_steps=2", "--config.model_kwargs.width=4",
              "--config.batch_size=8", "--config.num_train_examples=16",
              "--config.ptq.num_test_examples=32", "--config.ptq.compress=False",
              "--config.progress=False", "--config.tensorboard=False",
              f"--workdir={workdir}")
  return o, o.rc == 0 and o.tracebacks == 0, f"status {o.rc}, {o.seconds:.0f} s"


def packed_random_bytes(env: Env) -> tuple[Outcome, bool, str]:
  path = env.path("random.npz")
  with open(path, "wb") as f:
    f.write(os.urandom(4096))
  o = env.python(f"from bnnjax import packed\ntry:\n  packed.load({path!r})\n"
                 f"except ValueError as e:\n  print('error:', e)\n")
  ok = o.rc == 0 and "not a packed model" in o.out and "pickled" not in o.out
  return o, ok, "ValueError naming the file" if ok else "unexpected message"


def workdir_is_a_file(env: Env) -> tuple[Outcome, bool, str]:
  path = env.path("afile")
  with open(path, "w") as f:
    f.write("mine")
  o = env.run("run", RUN_CONFIG, f"--workdir={path}")
  ok = o.rc == 2 and o.tracebacks == 0 and "is a file" in o.err
  with open(path) as f:
    ok = ok and f.read() == "mine"
  return o, ok, "refused; the file is untouched" if ok else "unexpected"


def debug_traceback(env: Env) -> tuple[Outcome, bool, str]:
  o = env.run("run", RUN_CONFIG, "--config.batch_size=0", "--debug",
              f"--workdir={env.path('debug')}")
  return o, o.rc != 0 and o.tracebacks >= 1, f"{o.tracebacks} traceback(s) shown"


def all_checkpoints_unreadable(env: Env) -> tuple[Outcome, bool, str]:
  workdir = env.path("all_bad")
  args = [RUN_CONFIG, *TINY, "--config.num_train_steps=4",
          "--config.checkpoint_every_steps=2", f"--workdir={workdir}"]
  env.run("run", *args)
  os.remove(os.path.join(workdir, "results.json"))
  for step in (2, 4):
    truncate_checkpoint(workdir, step)
  o = env.run("run", *args)
  errors = [l for l in o.err.splitlines() if l.startswith("error: ")]
  checks = {"status 1": o.rc == 1, "no traceback": o.tracebacks == 0,
            "one error line": len(errors) == 1,
            "says what to do": bool(errors) and "No readable checkpoint is left" in errors[0],
            "both set aside": sorted(os.listdir(os.path.join(
                workdir, "checkpoints_unreadable"))) == ["2", "4"]}
  return verdict(o, checks, "one line per checkpoint, one error; both kept aside")


PROBES: list[Probe] = [
    Probe("same_command_twice", "1", "the same command started twice on a new workdir",
          lambda env: two_runs(env, different=False)),
    Probe("different_config_twice", "1", "a second run with another lr while the first trains",
          lambda env: two_runs(env, different=True)),
    Probe("corrupted_latest", "2", "checkpoints 40, 50, 60; a file of 60 truncated; rerun",
          corrupted_latest),
    Probe("keep_checkpoints_0", "3", "--config.keep_checkpoints=0",
          field("keep_checkpoints", "0", "config.keep_checkpoints=0")),
    Probe("eval_batch_size_0", "4", "--config.eval_batch_size=0",
          field("eval_batch_size", "0")),
    Probe("num_test_examples_0", "4", "--config.num_test_examples=0",
          field("num_test_examples", "0")),
    Probe("batch_size_-4", "4", "--config.batch_size=-4", field("batch_size", "-4")),
    Probe("num_train_examples_-10", "4", "--config.num_train_examples=-10",
          field("num_train_examples", "-10")),
    Probe("ptq_method_xnor", "4", "experiments.ptq --config.method=xnor",
          field("method", "xnor", "config.method='xnor'", command="ptq",
                config="--config=configs/ptq_resnet18.py")),
    Probe("fix_after_failure", "4", "batch_size=-4, then the corrected command, same workdir",
          fix_after_failure),
    Probe("batch_size_0", "5", "--config.batch_size=0", field("batch_size", "0")),
    Probe("log_every_steps_0", "5", "--config.log_every_steps=0",
          field("log_every_steps", "0")),
    Probe("checkpoint_every_steps_0", "5", "--config.checkpoint_every_steps=0",
          field("checkpoint_every_steps", "0")),
    Probe("dry_run_commands", "6", "sweep --dry_run of xnorpp_resnet18.py; run the printed "
          "xnor and case-4 commands", dry_run_commands),
    Probe("unknown_field", "7", "--config.nosuch=1",
          field("nosuch", "1", "--config.nosuch is not a config field")),
    Probe("misspelt_field", "7", "--config.model_kwargs.widht=3",
          field("model_kwargs.widht", "3", "Did you mean config.model_kwargs.width?")),
    Probe("unknown_dataset", "8", "--config.dataset=nosuchdata",
          field("dataset", "nosuchdata",
                "dataset='nosuchdata' is not a tensorflow-datasets name")),
    Probe("sweep_unknown_field", "8", "experiments.sweep --config.nosuch=1",
          field("nosuch", "1", "--config.nosuch is not a config field", command="sweep",
                config="--config=configs/xnorpp_resnet18.py")),
    Probe("ctrl_c", "8", "SIGINT (Ctrl-C) at a step; the same command again",
          lambda env: signal_at_step(env, signal.SIGINT, at_save=False)),
    Probe("ptq_docstring_example", "9", "ptq with the docstring's --config.ptq.bits=\"(8,4,3)\"",
          ptq_docstring_example),
    Probe("ptq_bits_without_grouping", "9", "--config.ptq.bits=(8,4,2) (grouping_bits=3 "
          "not in it)", field("ptq.bits", "(8,4,2)", "config.ptq.grouping_bits=3",
                              command="ptq", config="--config=configs/ptq_resnet18.py")),
    Probe("lr_inf", "10", "--config.lr=inf", field("lr", "inf")),
    Probe("weight_decay_negative", "10", "--config.weight_decay=-1e-4",
          field("weight_decay", "-1e-4")),
    Probe("decay_factor_2", "10", "--config.decay_factor=2 (a step 'decay' that grows)",
          field("decay_factor", "2.0")),
    Probe("rerun_finished", "10", "the same command after the run finished",
          rerun_finished),
    Probe("packed_random_bytes", "10", "bnnjax.packed.load on 4 KiB of random bytes",
          packed_random_bytes),
    Probe("workdir_is_a_file", "10", "--workdir naming a file", workdir_is_a_file),
    Probe("missing_config_file", "10", "--config=configs/nosuch.py",
          lambda env: refused(env, "run", config="--config=configs/nosuch.py",
                              fragment="no such file 'configs/nosuch.py'")),
    Probe("sigterm_at_step", "+", "SIGTERM at a step; the same command again",
          lambda env: signal_at_step(env, signal.SIGTERM, at_save=False)),
    Probe("sigterm_during_save", "+", "SIGTERM while a checkpoint is being written",
          lambda env: signal_at_step(env, signal.SIGTERM, at_save=True)),
    Probe("sigkill_then_rerun", "+", "SIGKILL at step 25 of 40; the same command again",
          sigkill_then_rerun),
    Probe("all_checkpoints_unreadable", "+", "every checkpoint truncated; rerun",
          all_checkpoints_unreadable),
    Probe("debug_flag", "+", "--config.batch_size=0 --debug", debug_traceback),
    Probe("wrong_type", "+", "--config.batch_size=8.5",
          field("batch_size", "8.5", "batch_size")),
]


def markdown(rows: list[dict], meta: dict) -> str:
  lines = ["# Reliability probe: every bad input and fault of issue 15", "",
           f"`{meta['command']}`, {meta['date']}, {meta['cpu']}; "
           f"{sum(r['ok'] for r in rows)} of {len(rows)} checks pass.", "",
           "| item | input or fault | status | tracebacks | message | check |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    msg = "<br>".join(m.replace("|", "\\|") for m in r["messages"][:3]) or "–"
    lines.append(f"| {r['item']} | {r['what'].replace('|', '/')} | {r['rc']} | "
                 f"{r['tracebacks']} | {msg} | {'ok' if r['ok'] else 'FAIL'}: "
                 f"{r['detail']} |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--only", default="", help="comma-separated probe ids")
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"))
  args = parser.parse_args(argv)
  only = [s for s in args.only.split(",") if s]
  unknown = sorted(set(only) - {p.id for p in PROBES})
  if unknown:
    parser.error(f"--only: unknown probe ids {unknown}; the ids are "
                 f"{[p.id for p in PROBES]}")
  rows = []
  with tempfile.TemporaryDirectory(prefix="bnnjax_probe_") as root:
    env = Env(root)
    for p in PROBES:
      if only and p.id not in only:
        continue
      try:
        o, ok, detail = p.fn(env)
      except Exception as e:  # a probe that could not run is a failed check
        o, ok, detail = Outcome(None, "", "", 0.0), False, f"probe failed: {e!r}"[:300]
      rows.append({"id": p.id, "item": p.item, "what": p.what, "rc": o.rc,
                   "tracebacks": o.tracebacks, "messages": o.messages(), "ok": ok,
                   "detail": detail, "seconds": round(o.seconds, 1),
                   **({} if ok else {"stderr_tail": o.err[-3000:]})})
      print(f"{'ok  ' if ok else 'FAIL'} {p.id}: rc={o.rc} {detail}", flush=True)
      if not ok and o.err:
        print(o.err[-3000:], flush=True)
  meta = {"command": "python -m benchmarks.reliability_probe"
          + (f" --only={args.only}" if only else ""),
          "date": datetime.date.today().isoformat(), "cpu": bench_cli.cpu_description()}
  if not only:  # a partial run does not replace the full table
    bench_cli.write_results({"meta": meta, "rows": rows},
                            os.path.join(args.out, "reliability_probe"),
                            lambda r: markdown(r["rows"], r["meta"]))
  return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  sys.exit(main())
