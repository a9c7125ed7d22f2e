"""Analysis plots as PNG: scaling-factor histograms and training curves.

* :func:`scaling_factors` / :func:`plot_scaling_factors` — the distribution of
  per-filter scaling factors of each binarised layer, the analysis of the cross-filter
  paper's §6.1 (Fig. 5: on a trained BWN NIN the factors of a layer are highly
  concentrated, which is what makes sharing one factor across ``n`` filters cheap).
  :func:`cf_sharing_error` measures that directly for a group size ``n``.
* :func:`plot_training_curves` — metrics of one or several runs from their
  ``metrics.jsonl`` (losses, train/test accuracy, learning rate, diagnostics).
* Latent-weight distributions over training (BONN Figs. 3-5) are
  :func:`bnnjax.analysis.plot_latent_histograms`.

Figures are drawn with ``matplotlib.figure.Figure`` (no pyplot), so they do not change
the plotting backend of a notebook; show a written PNG with
``IPython.display.Image(path)``.
"""

from __future__ import annotations

import json
import math
import os
from typing import Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from bnnjax import methods
from bnnjax.nn.layers import QuantConv
from bnnjax.nn.layers import QuantDense
from bnnjax.quant import scales
from bnnjax.tree_paths import path_name

# Metrics that are bookkeeping, not training curves.
_SKIP = ("step", "epoch", "examples_per_second", "test/count")
_SPLITS = ("train", "test", "val", "eval")


def scaling_factors(model: nnx.Module, *, include_fp: bool = False
                    ) -> dict[str, np.ndarray]:
  """Per-filter scaling factors of each quantized layer, ``{layer path: (c_out,)}``.

  The filter-wise factor ``α_o = mean|W[..., o]|`` (XNOR-Net/BWN,
  docs/xnor.md#the-weight-scale) of the latent kernel — the quantity the cross-filter
  paper histograms (§6.1) and averages over groups (§4.4, Eq. 16) — for every layer
  with a binary kernel. For
  XNOR-Net++ layers it is the learned ``α`` of ``Γ`` instead (flattened; case 2's
  ``α`` has one value per output position and filter): each method says which factors
  it shows (:meth:`bnnjax.methods.Method.filter_scales`).

  Args:
    model: an NNX model (e.g. from :func:`bnnjax.train.load_trained`).
    include_fp: also return ``mean|W_o|`` of full-precision conv/dense kernels.

  Raises:
    ValueError: the model has no such layer.
  """
  out = {}
  for path, m in nnx.iter_graph(model):
    if not isinstance(m, (QuantConv, QuantDense)):
      continue
    if not (m.spec.binary_kernel or include_fp):
      continue
    alpha = methods.for_spec(m.spec).filter_scales(m.spec, m)
    out[path_name(path)] = np.asarray(jax.device_get(alpha), np.float64).ravel()
  if not out:
    raise ValueError(
        "model has no layer with a binary kernel (a full-precision model): pass "
        "include_fp=True to look at mean|W_o| of its full-precision kernels.")
  return out


def cf_sharing_error(alpha, n: int) -> float:
  """Relative error of sharing one factor per ``n`` adjacent filters
  (docs/cross_filter.md#analyses).

  ``||α − α_CF||₂ / ||α||₂`` with ``α_CF`` each filter's group mean (cross-filter's
  optimum from filter-wise factors, §4.4 Eq. 16). 0 when the factors of every group
  are equal; small when they are concentrated, as §6.1 observes.

  Raises:
    ValueError: ``n`` does not divide the number of filters.
  """
  alpha = np.asarray(alpha, np.float64).ravel()
  shared = np.asarray(scales.cross_filter_from_filterwise(alpha, n), np.float64)
  norm = float(np.linalg.norm(alpha))
  return float(np.linalg.norm(alpha - shared)) / norm if norm else 0.0


def plot_scaling_factors(factors, out_path: str, *, bins: int = 30,
                         max_layers: int = 24, title: str | None = None) -> str:
  """One PNG with a histogram of the per-filter scaling factors of each layer.

  Each panel is a layer (cross-filter §6.1 / Fig. 5), annotated with the factors'
  coefficient of variation ``std/mean``.

  Args:
    factors: ``{layer: values}`` (e.g. :func:`scaling_factors`) or an NNX model.
    out_path: the PNG to write (its directory is created).
    bins: histogram bins per panel.
    max_layers: panels drawn at most (the first ones, in model order).
    title: figure title.

  Returns:
    ``out_path``.
  """
  from matplotlib.figure import Figure

  if isinstance(factors, nnx.Module):
    factors = scaling_factors(factors)
  if not factors:
    raise ValueError("factors is empty: nothing to plot.")
  items = list(factors.items())[:max_layers]
  cols = min(4, len(items))
  rows = math.ceil(len(items) / cols)
  fig = Figure(figsize=(3.2 * cols, 2.4 * rows))
  for i, (name, values) in enumerate(items):
    ax = fig.add_subplot(rows, cols, i + 1)
    v = np.asarray(values, np.float64).ravel()
    ax.hist(v, bins=bins, color="tab:blue")
    mean = float(np.mean(v))
    cv = float(np.std(v) / mean) if mean else float("nan")
    ax.set_title(f"{name}\n{v.size} factors, std/mean={cv:.2f}", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.set_xlabel("scaling factor", fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  _savefig(fig, out_path)
  return out_path


def read_metrics(path: str) -> list[dict]:
  """The records of a ``metrics.jsonl`` (``path`` is the file or its workdir)."""
  if os.path.isdir(path):
    path = os.path.join(path, "metrics.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist (expected a metrics.jsonl written "
                            "by bnnjax.train.train_and_evaluate, or its workdir).")
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _panel(key: str) -> str:
  """Metrics drawn together: ``train/top1`` and ``test/top1`` share ``top1``;
  ``loss/ce``, ``loss/total`` and ``test/loss`` share ``loss``; ``flip_ratio/<layer>``
  shares ``flip_ratio``."""
  head, _, rest = key.partition("/")
  if head in _SPLITS and rest:
    return rest.split("/")[0]
  return head


def plot_training_curves(runs: str | Mapping[str, str], out_path: str, *,
                         keys: Sequence[str] | None = None, max_panels: int = 12,
                         title: str | None = None) -> str:
  """Training curves of one or several runs as one PNG, one panel per metric family.

  Args:
    runs: a ``metrics.jsonl`` path or workdir, or ``{label: path}`` to overlay runs
      (e.g. the variants of an ablation).
    out_path: the PNG to write (its directory is created).
    keys: metric names (or prefixes, e.g. ``"loss"``, ``"test/top1"``) to draw;
      default every numeric metric except ``epoch``, ``examples_per_second`` and
      ``test/count``. Panels group ``train/x`` with ``test/x`` and ``a/b`` with
      ``a/c`` (see the module docstring).
    max_panels: panels drawn at most.
    title: figure title.

  Returns:
    ``out_path``.

  Raises:
    FileNotFoundError: a run has no metrics file.
    ValueError: no metric matches ``keys``.
  """
  from matplotlib.figure import Figure

  if isinstance(runs, (str, os.PathLike)):
    runs = {"": str(runs)}
  if not runs:
    raise ValueError("runs is empty: give a metrics path or {label: path}.")
  data = {label: read_metrics(path) for label, path in runs.items()}

  def wanted(k):
    if k in _SKIP:
      return False
    if keys is None:
      return True
    return any(k == q or k.startswith(q.rstrip("/") + "/") for q in keys)

  series: dict[str, dict[tuple[str, str], tuple[list, list]]] = {}
  for label, records in data.items():
    for rec in records:
      step = rec.get("step")
      if step is None:
        continue
      for k, v in rec.items():
        if not wanted(k) or not isinstance(v, (int, float)) or isinstance(v, bool):
          continue
        xs, ys = series.setdefault(_panel(k), {}).setdefault((label, k), ([], []))
        xs.append(step)
        ys.append(v)
  if not series:
    raise ValueError(f"No metric of {sorted(runs)} matches keys={keys!r}.")
  panels = list(series.items())[:max_panels]
  cols = min(3, len(panels))
  rows = math.ceil(len(panels) / cols)
  fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
  for i, (panel, lines) in enumerate(panels):
    ax = fig.add_subplot(rows, cols, i + 1)
    for (label, k), (xs, ys) in lines.items():
      name = " ".join(s for s in (label, k) if s)
      marker = "o" if len(xs) <= 3 else None
      ax.plot(xs, ys, label=name, marker=marker, markersize=3)
    ax.set_title(panel, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=7)
    if len(lines) <= 10:
      ax.legend(fontsize=6)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  _savefig(fig, out_path)
  return out_path


def _savefig(fig, out_path: str) -> None:
  directory = os.path.dirname(os.path.abspath(out_path))
  os.makedirs(directory, exist_ok=True)
  fig.savefig(out_path, dpi=110)
