"""How well a quantized tensor keeps the range and distribution of the original
(the seed's "bit efficiency", §III.b; docs/ptq.md#bit-efficiency-metrics).
Host-side numpy.

Per tensor, for the original ``x`` and its quantized version ``x̂`` at ``n`` bits:

* ``levels_used`` and ``level_fraction``: distinct codes, and that over ``2^n``;
* ``bit_levels``: ``log2`` of the number of distinct values of ``x̂`` (the seed's
  "average bit-levels" of power-of-two quantization is its mean over tensors);
* ``range_per_bit`` [rec]: dynamic range in octaves per bit,
  ``log2(max|x̂| / min_{x̂≠0}|x̂|)/n`` (0 when ``x̂`` has fewer than one non-zero
  magnitude);
* ``relative_error`` [rec]: ``‖x̂ − x‖₂ / ‖x‖₂`` (0 for ``x = 0``);
* ``quartile_error`` [rec]: the per-channel quartile error of Fig. 1,
  ``mean_{c,k} |Q_k(x̂_c) − Q_k(x_c)| / mean_c IQR(x_c)`` over channels ``c`` (last axis
  of a kernel; a vector is one channel) and quartiles ``k ∈ {25, 50, 75}``; the
  denominator falls back to ``max|x|`` when every IQR is 0 (and the error is 0 when
  ``x = 0``).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np

from bnnjax.ptq.quantizers import Quantized

QUARTILES = (25.0, 50.0, 75.0)


def channel_quartiles(x) -> np.ndarray:
  """``(channels, 3)``: the 25/50/75th percentiles of each channel (last axis of a
  tensor with 2 or more dimensions; the whole tensor otherwise)."""
  x = np.asarray(x, np.float64)
  x = x.reshape(-1, x.shape[-1]) if x.ndim >= 2 else x.reshape(-1, 1)
  return np.percentile(x, QUARTILES, axis=0).T


def quartile_error(x, x_hat) -> float:
  """Per-channel quartile error (module docstring)."""
  qx, qh = channel_quartiles(x), channel_quartiles(x_hat)
  err = float(np.mean(np.abs(qh - qx)))
  denom = float(np.mean(qx[:, 2] - qx[:, 0]))
  if denom <= 0:
    denom = float(np.max(np.abs(x))) if np.size(x) else 0.0
  return err / denom if denom > 0 else 0.0


def tensor_metrics(x, q: Quantized) -> dict[str, float]:
  """The bit-efficiency metrics of the module docstring for ``x`` and ``q``.

  >>> import jax.numpy as jnp
  >>> from bnnjax.ptq.quantizers import quantize
  >>> m = tensor_metrics(jnp.array([-1.0, 0.25, 0.5, 2.0]),
  ...                    quantize(jnp.array([-1.0, 0.25, 0.5, 2.0]),
  ...                             scheme="power_of_two", bits=8))
  >>> m["levels_used"], m["bit_levels"], m["range_per_bit"], m["relative_error"]
  (4, 2.0, 0.375, 0.0)
  """
  x = np.asarray(x, np.float64)
  x_hat = np.asarray(q.values, np.float64)
  levels = int(np.unique(np.asarray(q.codes)).size)
  distinct = int(np.unique(x_hat).size)
  mags = np.abs(x_hat)
  nonzero = mags[mags > 0]
  range_per_bit = (math.log2(float(nonzero.max()) / float(nonzero.min())) / q.bits
                   if nonzero.size else 0.0)
  norm = float(np.linalg.norm(x))
  rel = float(np.linalg.norm(x_hat - x)) / norm if norm > 0 else 0.0
  return {"levels_used": levels, "level_fraction": levels / 2**q.bits,
          "bit_levels": math.log2(distinct), "range_per_bit": range_per_bit,
          "relative_error": rel, "quartile_error": quartile_error(x, x_hat),
          "size": int(x.size)}


def summarize(per_tensor: Mapping[str, Mapping[str, float]],
              names: Iterable[str] | None = None) -> dict[str, float]:
  """Mean of each metric over the tensors ``names`` (default: all of them)."""
  names = list(per_tensor) if names is None else list(names)
  if not names:
    return {}
  keys = [k for k in per_tensor[names[0]] if k != "size"]
  return {k: float(np.mean([per_tensor[n][k] for n in names])) for k in keys}
