"""The seed's figures as PNG (matplotlib, Agg backend).

* :func:`plot_channel_quartiles` — Fig. 1: per-channel quartile ranges of one layer,
  float and quantized;
* :func:`plot_histograms` — Fig. 2: the layer's value histogram by scheme and by bits;
* :func:`plot_confusions` — Fig. 3: row-normalised confusion matrices;
* :func:`plot_accuracy` — Fig. 4: test accuracy against bits.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _channels(x) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x.reshape(-1, x.shape[-1]) if x.ndim >= 2 else x.reshape(-1, 1)


def plot_channel_quartiles(versions: Mapping[str, object], path: str, *,
                           title: str) -> str:
  """One row per version (e.g. ``{"float32": x, "asymmetric 4b": x̂, ...}``): a box
  per output channel (box = quartiles, whiskers 1.5 IQR, outliers as dots)."""
  plt = _pyplot()
  names = list(versions)
  fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.9 * len(names)), sharex=True,
                           sharey=True, squeeze=False)
  for ax, name in zip(axes[:, 0], names):
    ch = _channels(versions[name])
    ax.boxplot([ch[:, c] for c in range(ch.shape[1])], whis=1.5, widths=0.6,
               flierprops={"markersize": 1.5, "alpha": 0.5})
    ax.axhline(0.0, color="0.7", lw=0.6, zorder=0)
    ax.set_ylabel(name, fontsize=8)
    ax.tick_params(labelsize=7)
  axes[-1, 0].set_xlabel("output channel")
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return _save(fig, plt, path)


def plot_histograms(panels: Mapping[str, Mapping[str, object]], path: str, *,
                    title: str, bins: int = 120) -> str:
  """One panel per entry of ``panels`` (e.g. "by scheme", "by bits"), each a step
  histogram per version over the same bins (the float tensor's range)."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.6), squeeze=False)
  for ax, (panel, versions) in zip(axes[0], panels.items()):
    values = [np.asarray(v, np.float64).ravel() for v in versions.values()]
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    for name, v in zip(versions, values):
      ax.hist(v, bins=edges, histtype="step", label=name, lw=1.0)
    ax.set_yscale("log")
    ax.set_title(panel, fontsize=9)
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.legend(fontsize=7)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return _save(fig, plt, path)


def plot_confusions(matrices: Mapping[str, object], class_names: Sequence[str],
                    path: str) -> str:
  """Row-normalised confusion matrices side by side (rows: true class)."""
  plt = _pyplot()
  k = len(class_names)
  fig, axes = plt.subplots(1, len(matrices), figsize=(5.2 * len(matrices), 4.8),
                           squeeze=False)
  for ax, (name, m) in zip(axes[0], matrices.items()):
    m = np.asarray(m, np.float64)
    rates = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
    for i in range(k):
      for j in range(k):
        if rates[i, j] >= 0.005:
          ax.text(j, i, f"{100 * rates[i, j]:.0f}", ha="center", va="center",
                  fontsize=6, color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(m) / max(m.sum(), 1)
    ax.set_title(f"{name} (top-1 {100 * acc:.2f}%)", fontsize=9)
  fig.tight_layout()
  return _save(fig, plt, path)


def plot_accuracy(curves: Mapping[str, Mapping[int, float]], float_accuracy: float,
                  path: str, *, title: str) -> str:
  """Accuracy (%) against bits, one line per curve, the float model dashed."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for name, points in curves.items():
    bits = sorted(points)
    ax.plot(bits, [points[b] for b in bits], marker="o", ms=3.5, label=name,
            ls="--" if "per_channel" in name else "-")
  ax.axhline(float_accuracy, color="k", ls=":", lw=1.0, label=f"float32 ({float_accuracy:.2f})")
  ax.set_xlabel("bits")
  ax.set_ylabel("test top-1 (%)")
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return _save(fig, plt, path)


def _save(fig, plt, path: str) -> str:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
