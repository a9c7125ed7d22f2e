"""The Pallas kernels lower for cuda and tpu on this (CPU) machine via jax.export.

``jax.export(..., platforms=[...])`` runs JAX's lowering rules for the target without
the hardware: a Pallas primitive without a Triton or Mosaic lowering rule fails here.
Triton kernels are serialised as the ``__gpu$xla.gpu.triton`` custom call, which
jax.export does not guarantee to be stable across versions, so that check is disabled
explicitly (the lowering itself still runs). Compiling the lowered kernels needs the
real device (Triton/ptxas, libtpu) and is not done here.
"""

import functools

import jax
import jax.numpy as jnp
import pytest
from jax import export

from bnnjax.kernels import pallas_gpu
from bnnjax.kernels import pallas_tpu

TRITON = export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")


def _args(m, k, n):
  w = -(-k // 32)
  return (jax.ShapeDtypeStruct((m, w), jnp.uint32), jax.ShapeDtypeStruct((w, n), jnp.uint32))


@pytest.mark.parametrize("method,m", [("popcount", 1), ("mma", 100)])
def test_pallas_gpu_lowers_for_cuda(method, m):
  f = jax.jit(functools.partial(pallas_gpu.xnor_matmul, k=4097, method=method))
  exp = export.export(f, platforms=["cuda"], disabled_checks=[TRITON])(*_args(m, 4097, 100))
  text = exp.mlir_module()
  assert "__gpu$xla.gpu.triton" in text and f"xnor_matmul_{method}" in text
  assert exp.out_avals[0].shape == (m, 100) and exp.out_avals[0].dtype == jnp.int32


def test_pallas_tpu_lowers_for_tpu():
  f = jax.jit(functools.partial(pallas_tpu.xnor_matmul, k=4097))
  exp = export.export(f, platforms=["tpu"])(*_args(300, 4097, 200))
  assert "tpu_custom_call" in exp.mlir_module()
  assert exp.out_avals[0].shape == (300, 200)
