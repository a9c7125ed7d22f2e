"""Quantizing a trained model's parameters (conv, dense, batch norm, biases;
docs/ptq.md#what-is-quantized).

The quantizable tensors of a Flax NNX model fall in groups, found by the module that
owns them (so any model built from these layers works, whatever its attribute names):

* ``"conv"``: kernels of :class:`~bnnjax.nn.QuantConv` and ``nnx.Conv``;
* ``"dense"``: kernels of :class:`~bnnjax.nn.QuantDense` and ``nnx.Linear``;
* ``"bias"``: biases of those layers;
* ``"batch_norm"``: ``nnx.BatchNorm`` scale ``γ`` and bias ``β`` (its ``nnx.Param``);
* ``"batch_stats"``: ``nnx.BatchNorm`` running mean and variance (``nnx.BatchStat``).

:data:`DEFAULT_GROUPS` quantizes everything the seed quantizes ("convolution kernels,
batch norm layers, and dense layers") except the running statistics [rec: a variance
quantized to 0 makes the normalisation divide by ``√ε``; add ``"batch_stats"`` to
quantize them too]. Granularity ``"per_channel"`` gives every output channel of a
kernel (last axis) its own scale; vectors (biases, batch norm) are always quantized
per tensor, since their "channels" are single numbers.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from bnnjax.nn.layers import QuantConv
from bnnjax.nn.layers import QuantDense
from bnnjax.ptq.quantizers import Quantized
from bnnjax.ptq.quantizers import check_args
from bnnjax.ptq.quantizers import quantize_arrays
from bnnjax.tree_paths import path_name  # ptq.path_name: a tensor's name in the reports

GROUPS: tuple[str, ...] = ("conv", "dense", "bias", "batch_norm", "batch_stats")
DEFAULT_GROUPS: tuple[str, ...] = ("conv", "dense", "bias", "batch_norm")
GRANULARITIES: tuple[str, ...] = ("per_tensor", "per_channel")

_CONV = (QuantConv, nnx.Conv)
_DENSE = (QuantDense, nnx.Linear)


def parameter_groups(model: nnx.Module) -> dict[tuple, str]:
  """The quantizable tensors of ``model``: state path → group (see module docstring)."""
  groups: dict[tuple, str] = {}
  for path, module in nnx.iter_modules(model):
    if isinstance(module, _CONV + _DENSE):
      kind = "conv" if isinstance(module, _CONV) else "dense"
      groups[(*path, "kernel")] = kind
      if getattr(module, "bias", None) is not None:
        groups[(*path, "bias")] = "bias"
    elif isinstance(module, nnx.BatchNorm):
      for attr, group in (("scale", "batch_norm"), ("bias", "batch_norm"),
                          ("mean", "batch_stats"), ("var", "batch_stats")):
        if getattr(module, attr, None) is not None:
          groups[(*path, attr)] = group
  return groups


def check_groups(groups: Sequence[str]) -> tuple[str, ...]:
  """``groups`` as a tuple; ``ValueError`` naming ``groups`` for an unknown one."""
  if isinstance(groups, str):
    groups = (groups,)
  unknown = [g for g in groups if g not in GROUPS]
  if unknown:
    raise ValueError(f"groups={list(groups)!r}: unknown {unknown}; allowed values are "
                     f"{list(GROUPS)}.")
  return tuple(groups)


def check_granularity(granularity: str) -> None:
  if granularity not in GRANULARITIES:
    raise ValueError(
        f"granularity={granularity!r}; allowed values are {list(GRANULARITIES)}.")


def quantize_params(state: nnx.State, groups: Mapping[tuple, str], *, scheme: str,
                    bits: int, granularity: str = "per_tensor",
                    include: Sequence[str] = DEFAULT_GROUPS
                    ) -> tuple[nnx.State, dict[str, Quantized]]:
  """Replaces the tensors of ``state`` in the ``include``\\ d groups by ``x̂``.

  Args:
    state: the model's state (``nnx.split(model)[1]``, or any sub-state holding the
      tensors to quantize); it is not changed.
    groups: path → group, from :func:`parameter_groups`.
    scheme, bits: as :func:`~bnnjax.ptq.quantize`.
    granularity: ``"per_tensor"`` or ``"per_channel"`` (kernels only, see the module
      docstring).
    include: the groups to quantize.

  Returns:
    ``(new_state, quantized)``: a state of the same structure, shapes and dtypes
    (so one jitted function serves every quantized version), and path name →
    :class:`~bnnjax.ptq.Quantized` for each quantized tensor.

  Raises:
    ValueError: bad ``scheme``, ``bits``, ``granularity`` or ``include``.
  """
  check_args(scheme, bits)
  check_granularity(granularity)
  include = check_groups(include)
  quantized: dict[str, Quantized] = {}
  flat = []
  for path, var in nnx.to_flat_state(state):
    if groups.get(tuple(path)) in include:
      # numpy on the host: the same float32 formulas as the jitted quantize, with no
      # compilation for each of the model's many tensor shapes.
      x = np.asarray(var[...])
      if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
      axis = x.ndim - 1 if granularity == "per_channel" and x.ndim >= 2 else None
      reduce = tuple(i for i in range(x.ndim) if i != axis)
      values, codes, scale, zero_point = (
          jnp.asarray(a) for a in quantize_arrays(x, bits, scheme=scheme, axes=reduce,
                                                  xp=np))
      quantized[path_name(path)] = Quantized(
          values=values, codes=codes, scale=scale, zero_point=zero_point, scheme=scheme,
          bits=bits, axis=axis)
      var = var.replace(values)
    flat.append((path, var))
  return nnx.from_flat_state(flat), quantized


def quantize_model(model: nnx.Module, *, scheme: str, bits: int,
                   granularity: str = "per_tensor",
                   include: Sequence[str] = DEFAULT_GROUPS
                   ) -> tuple[nnx.Module, dict[str, Quantized]]:
  """A copy of ``model`` with its ``include``\\ d parameter groups quantized.

  The copy runs like the original (``model(x, train=False)``); ``model`` itself is
  not changed. Arguments as :func:`quantize_params`.

  Returns:
    ``(quantized_model, quantized)`` with ``quantized`` as in :func:`quantize_params`.
  """
  graphdef, state = nnx.split(model)
  new_state, quantized = quantize_params(
      state, parameter_groups(model), scheme=scheme, bits=bits,
      granularity=granularity, include=include)
  return nnx.merge(graphdef, new_state), quantized


def float_tensors(state: nnx.State, exclude: Mapping[str, object] = ()) -> dict:
  """Name → array of every floating ``Param``/``BatchStat`` of ``state`` not in
  ``exclude`` (what a stored model keeps in float32 besides the quantized tensors)."""
  out = {}
  for path, var in nnx.to_flat_state(state):
    name = path_name(path)
    if name in exclude or not isinstance(var, (nnx.Param, nnx.BatchStat)):
      continue
    value = var[...]
    if jnp.issubdtype(jnp.asarray(value).dtype, jnp.floating):
      out[name] = value
  return out
