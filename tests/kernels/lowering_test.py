"""The Pallas kernels lower for cuda and tpu on this (CPU) machine via jax.export.

``jax.export(..., platforms=[...])`` runs JAX's lowering rules for the target without
the hardware: a Pallas primitive without a Triton or Mosaic lowering rule fails here.
Triton kernels are serialised as the ``__gpu$xla.gpu.triton`` custom call, which
jax.export does not guarantee to be stable across versions, so that check is disabled
explicitly (the lowering itself still runs). Where that call carries the Triton module
(jax <= 0.10.2) it is parsed back and MLIR-verified (op shapes and types: reshapes,
dots, loads), and its launch grid compared with the kernel's plan. Compiling the
lowered kernels (Triton → PTX → SASS) needs the GPU toolchain and is not done here.
"""

import functools
import re

import jax
import jax.numpy as jnp
import pytest
from jax import export

from bnnjax.kernels import pallas_gpu
from bnnjax.kernels import pallas_tpu

# jaxlib <= 0.10.2 emits the first (carrying the Triton module), later ones compile the
# kernel while lowering and emit the second.
TRITON = [export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton"),
          export.DisabledSafetyCheck.custom_call("triton_kernel_call_ffi")]
GPU_METHODS = ("auto", "popcount", "mma", "mma_a8")
# Small shapes (K not a multiple of 32, M and N not multiples of the tiles) and the
# issue's table at their real tilings.
GPU_SHAPES = [(1, 4097, 100), (100, 4097, 100), (1, 16384, 16384), (16, 16384, 16384),
              (256, 8192, 8192), (4096, 8192, 8192)]


def _args(m, k, n):
  w = -(-k // 32)
  return (jax.ShapeDtypeStruct((m, w), jnp.uint32), jax.ShapeDtypeStruct((w, n), jnp.uint32))


def _triton_modules(text: str) -> list[tuple[str, bytes, tuple[int, int, int]]]:
  """``(name, Triton IR bytecode, grid)`` of each ``__gpu$xla.gpu.triton`` call that
  carries its module (the jax <= 0.10.2 form); ``[]`` otherwise."""
  from jax._src.interpreters import mlir  # pylint: disable=g-import-not-at-top
  from jax._src.lib.mlir import ir  # pylint: disable=g-import-not-at-top
  found = []
  with mlir.make_ir_context():
    module = ir.Module.parse(text)

    def walk(op):
      for region in op.regions:
        for block in region.blocks:
          for child in block.operations:
            child = child.operation
            if (child.name == "stablehlo.custom_call"
                and "__gpu$xla.gpu.triton" in str(child.attributes["call_target_name"])
                and "mhlo.backend_config" in child.attributes):
              cfg = {a.name: a.attr for a in child.attributes["mhlo.backend_config"]}
              if "ir" in cfg:
                grid = tuple(ir.IntegerAttr(cfg[g]).value
                             for g in ("grid_x", "grid_y", "grid_z"))
                found.append((ir.StringAttr(cfg["name"]).value,
                              ir.StringAttr(cfg["ir"]).value_bytes, grid))
            walk(child)

    walk(module.operation)
  return found


def _verify_triton(ir_bytes: bytes) -> None:
  from jax._src.lib.mlir import ir  # pylint: disable=g-import-not-at-top
  from jax._src.pallas.triton import lowering  # pylint: disable=g-import-not-at-top
  with lowering._new_ir_context():  # pylint: disable=protected-access
    assert ir.Module.parse(ir_bytes).operation.verify()


def _expected_grid(method, m, k, n):
  w = -(-k // 32)
  if method == "popcount":
    return pallas_gpu.popcount_plan(m, w, n)["grid"]
  p = pallas_gpu.mma_plan(m, w, n, a_unpacked=method == "mma_a8")
  return (p["mp"] // p["bm"], p["np"] // p["bn"], 1)


@pytest.mark.parametrize("m,k,n", GPU_SHAPES)
@pytest.mark.parametrize("method", GPU_METHODS)
def test_pallas_gpu_lowers_for_cuda(method, m, k, n):
  f = jax.jit(functools.partial(pallas_gpu.xnor_matmul, k=k, method=method))
  exp = export.export(f, platforms=["cuda"], disabled_checks=TRITON)(*_args(m, k, n))
  text = exp.mlir_module()
  chosen = pallas_gpu.choose_method(m, n) if method == "auto" else method
  assert re.search(r"__gpu\$xla\.gpu\.triton|triton_kernel_call", text)
  assert f"xnor_matmul_{chosen}" in text
  assert exp.out_avals[0].shape == (m, n) and exp.out_avals[0].dtype == jnp.int32
  modules = _triton_modules(text)
  if "__gpu$xla.gpu.triton" in text and " ir = " in text:  # the form that carries it
    assert len(modules) == 1
  for name, ir_bytes, grid in modules:
    assert name == f"xnor_matmul_{chosen}"
    _verify_triton(ir_bytes)
    grid_xyz = _expected_grid(chosen, m, k, n)
    assert grid == tuple(grid_xyz) + (1,) * (3 - len(grid_xyz))


def test_pallas_gpu_big_shapes_get_wide_grids():
  """The issue's GEMV gets a grid for all 132 SMs through split-K, not 64 programs."""
  f = jax.jit(functools.partial(pallas_gpu.xnor_matmul, k=16384))
  exp = export.export(f, platforms=["cuda"], disabled_checks=TRITON)(
      *_args(1, 16384, 16384))
  grids = [g for _, _, g in _triton_modules(exp.mlir_module())]
  if not grids:
    pytest.skip("this jax's Triton custom call does not carry the grid")
  [(x, y, z)] = grids
  assert x * y * z >= pallas_gpu.TARGET_PROGRAMS // 2 and y > 1


def test_pallas_tpu_lowers_for_tpu():
  f = jax.jit(functools.partial(pallas_tpu.xnor_matmul, k=4097))
  exp = export.export(f, platforms=["tpu"])(*_args(300, 4097, 200))
  assert "tpu_custom_call" in exp.mlir_module()
  assert exp.out_avals[0].shape == (300, 200)
