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
"""

import os

os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")

import jax  # noqa: E402  (after the environment it reads at import)

_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      ".pytest_cache", "jax_compilation_cache")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
