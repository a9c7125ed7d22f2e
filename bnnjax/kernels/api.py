"""Choosing an implementation of the packed kernels by name, with fallback.

Implementations of ``xnor_matmul(a_packed, b_packed, k)`` (all exact, int32):

=============== ========================================= =============================
name            what                                      runs on
=============== ========================================= =============================
``reference``   unpack to ±1 and an int32 ``jnp.dot``     anywhere (slow; the definition)
``xla``         blocked XOR-popcount loop (:mod:`.xla`)   anywhere (fast on CPU)
``pallas_gpu``  Pallas Triton: popcount for small batch,  GPU (CUDA/ROCm), or anywhere
                int8 tensor cores for large               with ``interpret=True``
``pallas_tpu``  Pallas Mosaic: unpack to bf16 + MXU       TPU, or anywhere with
                                                          ``interpret=True``
=============== ========================================= =============================

``implementation`` is a name, a sequence of names tried in order, or ``None`` for the
platform's default chain (:data:`DEFAULT_CHAIN`: ``("pallas_gpu", "xla")`` on GPU,
``("pallas_tpu", "xla")`` on TPU, ``("xla",)`` elsewhere). An implementation that
cannot run here (a Pallas kernel on another platform without ``interpret``) raises
:class:`Unavailable`; the dispatcher then tries the next name of the chain, and if none
is left re-raises with every reason. So a single name never falls back silently, and a
chain ending in ``"xla"`` always runs. An unknown name is a ``ValueError`` listing the
allowed ones.

To lower a Pallas kernel for another platform (``jax.export(...,
platforms=["cuda"])`` on a CPU machine) call its module directly
(:func:`bnnjax.kernels.pallas_gpu.xnor_matmul`): the dispatcher checks the platform
this process runs on.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from bnnjax.kernels import pallas_gpu
from bnnjax.kernels import pallas_tpu
from bnnjax.kernels import xla
from bnnjax.kernels.packing import num_words
from bnnjax.kernels.reference import xnor_matmul_reference

# name -> fn(a_packed, b_packed, k, interpret): every implementation of xnor_matmul.
_IMPLS: dict[str, Callable[[jax.Array, jax.Array, int, bool], jax.Array]] = {
    "reference": lambda a, b, k, interpret: xnor_matmul_reference(a, b, k),
    "xla": lambda a, b, k, interpret: xla.xnor_matmul(a, b, k),
    "pallas_gpu": lambda a, b, k, interpret: pallas_gpu.xnor_matmul(
        a, b, k, interpret=interpret),
    "pallas_tpu": lambda a, b, k, interpret: pallas_tpu.xnor_matmul(
        a, b, k, interpret=interpret),
}
IMPLEMENTATIONS = tuple(_IMPLS)
DEFAULT_CHAIN = {"gpu": ("pallas_gpu", "xla"), "tpu": ("pallas_tpu", "xla")}
# The platforms an implementation runs on natively (others need interpret=True).
_PLATFORM = {"pallas_gpu": ("gpu", "cuda", "rocm"), "pallas_tpu": ("tpu",)}

Implementation = str | Sequence[str] | None


class Unavailable(NotImplementedError):
  """An implementation cannot run in this process (the message says why)."""


def _platform() -> str:
  return jax.default_backend()


def _run(name: str, a, b, k: int, interpret: bool) -> jax.Array:
  """``xnor_matmul`` by the implementation ``name`` (a validated name of
  :data:`IMPLEMENTATIONS`); :class:`Unavailable` if it cannot run on this platform."""
  if name in _PLATFORM and not interpret and _platform() not in _PLATFORM[name]:
    raise Unavailable(
        f"implementation={name!r} needs a {_PLATFORM[name][0].upper()} (this process "
        f"runs on {_platform()!r}); pass interpret=True to run it in Pallas interpret "
        "mode.")
  return _IMPLS[name](a, b, k, interpret)


def resolve(implementation: Implementation) -> tuple[str, ...]:
  """The chain of names ``implementation`` stands for (validated)."""
  if implementation is None:
    chain = DEFAULT_CHAIN.get(_platform(), ("xla",))
  elif isinstance(implementation, str):
    chain = (implementation,)
  else:
    chain = tuple(implementation)
  if not chain:
    raise ValueError("implementation=() is empty; give a name, a sequence of names "
                     f"from {list(IMPLEMENTATIONS)}, or None.")
  for name in chain:
    if name not in IMPLEMENTATIONS:
      raise ValueError(f"implementation={implementation!r}: {name!r} is not a known "
                       f"implementation; allowed values are {list(IMPLEMENTATIONS)}, a "
                       "sequence of them (tried in order), or None (platform default).")
  return chain


def _check_operands(a, b, k) -> None:
  if a.ndim != 2 or b.ndim != 2:
    raise ValueError(f"xnor_matmul: a_packed must be (M, W) and b_packed (W, N), got "
                     f"shapes {a.shape} and {b.shape}.")
  for name, x in (("a_packed", a), ("b_packed", b)):
    if x.dtype != jnp.uint32:
      raise ValueError(f"xnor_matmul: {name} must be uint32 words (pack_bits), got "
                       f"{x.dtype}.")
  if not isinstance(k, int) or k < 1:
    raise ValueError(f"xnor_matmul: k={k!r}; allowed values are integers >= 1 (the "
                     "contraction length).")
  if a.shape[1] != b.shape[0] or a.shape[1] < num_words(k):
    raise ValueError(
        f"xnor_matmul: a_packed has {a.shape[1]} words per row and b_packed "
        f"{b.shape[0]} per column; they must be equal and at least ceil(k/32) = "
        f"{num_words(k)} for k={k}.")


def xnor_matmul(a_packed: jax.Array, b_packed: jax.Array, k: int, *,
                implementation: Implementation = None,
                interpret: bool = False) -> jax.Array:
  """``sign(A) @ sign(B)`` exactly from bit-packed operands ``(M, N)`` int32
  (docs/packed.md#the-xnor-popcount-dot-product).

  ``out[m, n] = k − 2·Σ_w popcount(a[m, w] XOR b[w, n])``. Bits beyond the ``k`` real
  ones must be equal in both operands (``pack_bits`` makes them 0), so they XOR to 0;
  there may be more than ``ceil(k/32)`` words (e.g. channels padded per conv tap).

  Args:
    a_packed: ``(M, W)`` uint32: ``pack_bits(A, axis=1)``.
    b_packed: ``(W, N)`` uint32: ``pack_bits(B, axis=0)``.
    k: the number of real (non-padding) bits ``K``, ``32·W >= K``; a Python int.
    implementation: a name of :data:`IMPLEMENTATIONS`, a sequence tried in order, or
      ``None`` for the platform default (see the module docstring).
    interpret: run Pallas implementations in interpret mode (CPU tests).

  Raises:
    ValueError: bad operands or an unknown implementation name.
    Unavailable: no implementation of the chain can run here (names every reason).
  """
  a_packed, b_packed = jnp.asarray(a_packed), jnp.asarray(b_packed)
  _check_operands(a_packed, b_packed, k)
  chain = resolve(implementation)
  reasons = []
  for name in chain:
    try:
      return _run(name, a_packed, b_packed, k, interpret)
    except Unavailable as e:
      reasons.append(str(e))
  raise Unavailable(" / ".join(reasons))

