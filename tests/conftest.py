"""Test-session settings.

A persistent XLA compilation cache (under pytest's cache dir) lets the many small
training runs that compile identical programs reuse them, within a run and across
runs on the same machine.
"""

import os

import jax

_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      ".pytest_cache", "jax_compilation_cache")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
