"""How two-moded are a layer's latent weights? (BONN Figs. 3-4.)

BONN's kernel loss pulls latent weights toward a mixture of two Gaussians at ``±μ``.
Two measures of how far that went, both on host numpy:

- :func:`two_mode_fit`: a symmetric two-component Gaussian mixture ``½N(m, s²) +
  ½N(−m, s²)`` fitted by EM; its Ashman's D ``= 2m/s`` is > 2 for cleanly separated
  modes and near 1.6 for a single Gaussian fitted this way.
- :func:`mode_mass`: the fraction of weights with ``|k|`` within ``rel_width·μ_i`` of
  their filter's ``μ_i``.

:func:`histogram_record` and :func:`plot_latent_histograms` keep and draw per-layer
histograms over training (the trainer writes them every ``histogram_every_steps``).
"""

from __future__ import annotations

import json
import os
from typing import Iterable

import numpy as np


def two_mode_fit(x, iterations: int = 100) -> dict[str, float]:
  """EM fit of ``½N(m, s²) + ½N(−m, s²)`` to the values of ``x``.

  Returns ``{"m": m, "s": s, "ashman_d": 2m/s}``.
  """
  x = np.asarray(x, np.float64).ravel()
  m = float(np.mean(np.abs(x)))
  s = float(np.std(x)) or 1e-12
  for _ in range(iterations):
    # responsibility of the +m component: sigmoid(2 m x / s²)
    r = 0.5 * (1.0 + np.tanh(m * x / s ** 2))
    m = float(np.mean((2.0 * r - 1.0) * x))
    s = float(np.sqrt(np.mean(r * (x - m) ** 2 + (1.0 - r) * (x + m) ** 2))) or 1e-12
  m = abs(m)
  return {"m": m, "s": s, "ashman_d": 2.0 * m / s}


def mode_mass(kernel, mu=None, rel_width: float = 0.5) -> float:
  """Fraction of weights with ``| |k| − μ_i | ≤ rel_width · μ_i`` (``μ_i`` per filter,
  last axis; default ``mean|k_i|``)."""
  k = np.asarray(kernel, np.float64)
  k = k.reshape(-1, k.shape[-1])
  mu = np.mean(np.abs(k), axis=0) if mu is None else np.asarray(mu, np.float64)
  return float(np.mean(np.abs(np.abs(k) - mu) <= rel_width * mu))


def bimodality(kernel, mu=None) -> dict[str, float]:
  """Both measures for one layer: ``ashman_d``, ``m``, ``s`` and ``mode_mass``."""
  return {**two_mode_fit(kernel), "mode_mass": mode_mass(kernel, mu)}


def histogram_record(step: int, layers: Iterable[tuple[str, np.ndarray]],
                     bins: int = 81) -> dict:
  """One JSON-able record: per layer the histogram of its latent weights, on bins
  symmetric around 0 spanning ``±4·std`` of the weights at this step."""
  out = {"step": int(step), "layers": {}}
  for name, k in layers:
    k = np.asarray(k, np.float64).ravel()
    r = 4.0 * float(np.std(k)) or 1.0
    counts, edges = np.histogram(k, bins=bins, range=(-r, r))
    out["layers"][name] = {"counts": counts.tolist(), "range": r,
                           **{k_: round(v, 6) for k_, v in bimodality(k).items()}}
  return out


def read_histograms(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def plot_latent_histograms(path: str, out_dir: str, max_layers: int = 12) -> list[str]:
  """Draws, for each layer in the histogram file ``path``, its latent-weight
  histogram at each recorded step (light to dark over training) as one PNG.

  Returns the PNG paths.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  records = read_histograms(path)
  if not records:
    raise ValueError(f"{path} holds no histogram records.")
  os.makedirs(out_dir, exist_ok=True)
  names = list(records[0]["layers"])[:max_layers]
  cmap = plt.get_cmap("viridis")
  written = []
  for name in names:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, rec in enumerate(records):
      layer = rec["layers"][name]
      counts = np.asarray(layer["counts"], np.float64)
      edges = np.linspace(-layer["range"], layer["range"], len(counts) + 1)
      centres = (edges[:-1] + edges[1:]) / 2
      density = counts / max(counts.sum(), 1) / (edges[1] - edges[0])
      ax.plot(centres, density, color=cmap(i / max(len(records) - 1, 1)),
              label=f"step {rec['step']} (D={layer['ashman_d']:.2f})")
    ax.set_title(f"latent weights: {name}", fontsize=9)
    ax.set_xlabel("weight value")
    ax.set_ylabel("density")
    ax.legend(fontsize=6)
    fig.tight_layout()
    png = os.path.join(out_dir, f"latent_{name.replace('/', '.')}.png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    written.append(png)
  return written
