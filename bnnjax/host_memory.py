"""Transparent huge pages for XLA:CPU's per-execution buffers (glibc's ``hugetlb``).

XLA:CPU gives each execution of a compiled program one buffer for all its temporaries
(the README model's train step: 256 MB, ``*-memory-usage-report.txt`` of an XLA dump)
and frees it when the execution ends. glibc's ``malloc`` serves a request that large
with a fresh ``mmap`` (above its 32 MB ``mmap`` threshold cap, and always from a
worker thread's arena) and returns it with ``munmap``, so every step faults its pages
in again, 4 KB at a time, each one zeroed by the kernel. Measured on a 2-core AVX-512
machine (glibc 2.36, THP ``madvise``; the README model's train step, ``perf stat``):
38 K page faults and 105-125 ms of kernel time per 225-240 ms step.

With glibc's tunable ``glibc.malloc.hugetlb=1`` (glibc >= 2.35) ``malloc`` advises
transparent huge pages (``MADV_HUGEPAGE``) for the memory it maps, and those faults
become 2 MB ones: the same step took 176-207 ms with 29-44 ms of kernel time. Also
tried, alternated in one session: raising ``M_MMAP_THRESHOLD`` (capped at 32 MB, no
effect), ``M_MMAP_MAX=0`` (worker arenas map large requests anyway, no effect), one
arena with no ``mmap`` (no faults, but 365 ms of user time against 300: 223-273 ms),
jemalloc (no gain) and tcmalloc (165 ms, no faults; not installable from PyPI).

A tunable is read only when a process starts, so :func:`use_huge_pages` re-executes
the running command once with it set; the commands (``experiments.run``, ``.sweep``,
``.ptq``, ``.export`` and the benchmarks) call it before they import JAX.
``BNNJAX_HUGE_PAGES=0`` turns it off. It does nothing where it would not change
anything: not Linux with glibc >= 2.35, THP ``never`` (no huge pages) or ``always``
(``mmap`` already gets them), or the tunable already set.
"""

from __future__ import annotations

import os
import re
import sys

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT_ENV = "BNNJAX_HUGE_PAGES"
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"


def glibc_version() -> tuple[int, int] | None:
  """``(major, minor)`` of the C library when it is glibc, else None."""
  try:
    name = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
  except (AttributeError, ValueError, OSError):
    return None
  m = re.fullmatch(r"glibc (\d+)\.(\d+).*", name or "")
  return (int(m.group(1)), int(m.group(2))) if m else None


def thp_mode(path: str = THP_ENABLED) -> str | None:
  """The kernel's transparent-huge-page mode (the bracketed word of ``path``:
  ``always``, ``madvise`` or ``never``), or None where it cannot be read."""
  try:
    with open(path) as f:
      m = re.search(r"\[(\w+)\]", f.read())
  except OSError:
    return None
  return m.group(1) if m else None


def tuned_environ(environ: dict[str, str], glibc: tuple[int, int] | None,
                  thp: str | None) -> dict[str, str] | None:
  """``environ`` with ``glibc.malloc.hugetlb=1`` added to ``GLIBC_TUNABLES`` (its other
  tunables kept), or None when that would change nothing or is turned off: glibc older
  than 2.35 or absent, THP mode other than ``madvise``, the tunable already present,
  or ``BNNJAX_HUGE_PAGES=0``."""
  if environ.get(OPT_OUT_ENV, "1") == "0":
    return None
  if glibc is None or glibc < (2, 35) or thp != "madvise":
    return None
  tunables = environ.get("GLIBC_TUNABLES", "")
  if any(t.partition("=")[0] == TUNABLE for t in tunables.split(":") if t):
    return None
  env = dict(environ)
  env["GLIBC_TUNABLES"] = ":".join(t for t in (tunables, f"{TUNABLE}=1") if t)
  return env


def use_huge_pages() -> None:
  """Re-executes this process (same interpreter, options and arguments:
  ``sys.orig_argv``) with :func:`tuned_environ`'s environment, once; returns without
  doing anything where that is None. Call it first thing in a command's
  ``__main__``, before JAX or any thread starts."""
  env = tuned_environ(dict(os.environ), glibc_version(), thp_mode())
  if env is None:
    return
  argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, argv, env)
  except OSError as e:  # e.g. a sandbox without exec: run on, only slower
    print(f"bnnjax: could not restart with {TUNABLE}=1 ({e}); running without it.",
          file=sys.stderr)
