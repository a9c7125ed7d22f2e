"""bnnjax.host_memory: when the commands restart with glibc's huge-page tunable."""

import glob
import os
import subprocess
import sys

import pytest

from bnnjax import host_memory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ON = f"{host_memory.TUNABLE}=1"


def test_tunable_is_added_and_other_tunables_are_kept():
  env = host_memory.tuned_environ({"PATH": "/bin"}, (2, 36), "madvise")
  assert env == {"PATH": "/bin", "GLIBC_TUNABLES": ON}
  env = host_memory.tuned_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
                                  (2, 35), "madvise")
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:" + ON


@pytest.mark.parametrize("environ,glibc,thp", [
    ({}, (2, 34), "madvise"),                          # no hugetlb tunable before 2.35
    ({}, None, "madvise"),                             # not glibc (musl, macOS)
    ({}, (2, 36), "always"),                           # mmap gets huge pages already
    ({}, (2, 36), "never"),                            # no huge pages to get
    ({}, (2, 36), None),                               # no THP in this kernel
    ({"GLIBC_TUNABLES": f"{host_memory.TUNABLE}=0"}, (2, 36), "madvise"),  # user's
    ({"GLIBC_TUNABLES": "a=1:" + ON}, (2, 36), "madvise"),  # already restarted
    ({host_memory.OPT_OUT_ENV: "0"}, (2, 36), "madvise"),   # turned off
])
def test_no_restart_where_it_would_change_nothing(environ, glibc, thp):
  assert host_memory.tuned_environ(environ, glibc, thp) is None


def test_thp_mode_reads_the_bracketed_mode(tmp_path):
  path = tmp_path / "enabled"
  path.write_text("always [madvise] never\n")
  assert host_memory.thp_mode(str(path)) == "madvise"
  path.write_text("[always] madvise never\n")
  assert host_memory.thp_mode(str(path)) == "always"
  assert host_memory.thp_mode(str(tmp_path / "missing")) is None


def _child_tunables(extra_env):
  """GLIBC_TUNABLES as a child process sees it after ``use_huge_pages()``, and how
  many times the child ran its code (a restart replaces it: the code runs once)."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("GLIBC_TUNABLES", host_memory.OPT_OUT_ENV)}
  env.update(extra_env)
  code = ("import os, sys; from bnnjax import host_memory; "
          "print('pid', os.getpid(), flush=True); host_memory.use_huge_pages(); "
          "print('tunables', os.environ.get('GLIBC_TUNABLES'), sys.argv[1:])")
  out = subprocess.run([sys.executable, "-c", code, "arg1", "--flag=x"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=60, check=True)
  return out.stdout.splitlines(), env


def test_use_huge_pages_restarts_once_with_the_tunable_and_the_same_arguments():
  lines, env = _child_tunables({})
  expected = host_memory.tuned_environ(env, host_memory.glibc_version(),
                                       host_memory.thp_mode())
  tunables = [l for l in lines if l.startswith("tunables")]
  assert tunables == [f"tunables {expected and expected['GLIBC_TUNABLES']} "
                      "['arg1', '--flag=x']"]
  pids = {l for l in lines if l.startswith("pid")}
  # restarted in place (same process id: signals and waiting parents see one process)
  assert len(pids) == 1
  assert len([l for l in lines if l.startswith("pid")]) == (2 if expected else 1)


def test_opt_out_keeps_the_environment():
  lines, _ = _child_tunables({host_memory.OPT_OUT_ENV: "0"})
  assert [l for l in lines if l.startswith("tunables")] == [
      "tunables None ['arg1', '--flag=x']"]


def test_every_command_restarts_before_it_runs():
  """Every ``python -m experiments.X`` / ``benchmarks.X`` command calls
  ``use_huge_pages()`` first in its ``__main__`` block."""
  commands = [p for p in glob.glob(os.path.join(REPO, "experiments", "*.py"))
              + glob.glob(os.path.join(REPO, "benchmarks", "*.py"))
              if 'if __name__ == "__main__":' in open(p).read()]
  assert len(commands) >= 10
  for path in commands:
    main = open(path).read().split('if __name__ == "__main__":\n', 1)[1]
    first = [l.strip() for l in main.splitlines() if l.strip()][:2]
    assert first == ["from bnnjax import host_memory",
                     "host_memory.use_huge_pages()  # before JAX starts: see "
                     "bnnjax/host_memory.py"], path
