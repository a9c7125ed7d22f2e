"""Test-session settings.

A persistent XLA compilation cache (under pytest's cache dir) lets the many small
training runs that compile identical programs reuse them, within a run and across
runs on the same machine.

Threefry: with ``jax_threefry_partitionable`` (JAX's default) XLA:CPU takes seconds
to compile the random-bits program of each small multi-dimensional shape (measured:
``jax.random.normal(key, (3, 3, 4, 8))`` 5-7 s, the same 288 numbers as a flat
``(288,)`` 0.4 s, and 0.4 s with the flag off), so the tests' tiny models spent half
their compile time on initializers. The tests turn it off, through the environment so
that the CLI runs they start in subprocesses inherit it. It changes which random
numbers a key gives, not what any test checks; users keep JAX's default.

Optimisation level: the suite's programs are tiny and run a few steps, so compiling
them dominates; ``--xla_backend_optimization_level=0`` (LLVM without its optimisation
passes) halved the compile time of a tiny ResNet-18 train step (measured 35.5 → 17.8 s,
eval step 16.0 → 7.1 s, same machine, same load), and the one test that trains for
120 steps was not slower. It is appended to ``XLA_FLAGS`` so that subprocesses inherit
it; the computed values are the same functions (the tests compare against references
with tolerances, and bit-exact comparisons are between programs compiled alike).

Fusion emitters (jaxlib < 0.11, which has the flag):
``--xla_cpu_use_fusion_emitters=false`` emits XLA:CPU's fusions with its older elemental
emitters, which generate less LLVM IR for the suite's many small fusions: a tiny
ResNet-18 train step compiled in 7.0-9.2 s instead of 10.5-13.2 s, its eval forward in
2.4-3.6 s instead of 4.1-4.5 s, and eager model construction (one small program per op)
took 5.3-5.6 s instead of 7.4-10.3 s (same machine, same load, alternated). A step runs
somewhat slower (20 steps 1.10 s against 0.65 s), which the suite's short runs do not
feel. Appended to ``XLA_FLAGS`` like the level, and for the same reasons harmless to
what the tests check.

Huge pages: the commands restart themselves with glibc's ``glibc.malloc.hugetlb=1``
(:mod:`bnnjax.host_memory`); the suite puts it in the environment the same way, so
that the xdist workers (started after this file is read) and the commands the tests
start run as users' commands do.
"""

import os

os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
def _jaxlib_version() -> tuple[int, ...]:
  """The installed jaxlib's version, read from its metadata (no import: XLA reads
  ``XLA_FLAGS`` once, when a backend starts)."""
  from importlib import metadata
  try:
    return tuple(int(p) for p in metadata.version("jaxlib").split(".")[:2])
  except (metadata.PackageNotFoundError, ValueError):
    return (0, 0)


# XLA aborts every process whose XLA_FLAGS names a flag it does not know, so a flag
# goes in only where the installed XLA has it. jaxlib 0.11 dropped
# ``xla_cpu_use_fusion_emitters`` (its libjax_common.so no longer holds the flag's
# name): on an H200 with jaxlib 0.11.2 every pytest worker died at start ("node down:
# Not properly terminated", no test ran). Its effect was measured on jaxlib 0.10.
_FLAGS = ["--xla_backend_optimization_level=0"]
if _jaxlib_version() < (0, 11):
  _FLAGS.append("--xla_cpu_use_fusion_emitters=false")
for _flag in _FLAGS:
  if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

from bnnjax import host_memory  # noqa: E402  (light: no JAX)
_TUNED = host_memory.tuned_environ(dict(os.environ), host_memory.glibc_version(),
                                   host_memory.thp_mode())
if _TUNED is not None:
  os.environ["GLIBC_TUNABLES"] = _TUNED["GLIBC_TUNABLES"]

# The persistent compilation cache, through the environment as well, so that the CLI
# runs the tests start in subprocesses share it.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache",
    "jax_compilation_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402,F401  (after the environment it reads at import)
