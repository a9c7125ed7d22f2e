"""Latent-weight histograms the trainer records: two-mode measures and their plots."""

import json
import os

import numpy as np
import pytest

from bnnjax.train import diagnostics


def test_two_mode_fit_recovers_a_mixture():
  rng = np.random.default_rng(0)
  x = rng.choice([-1.0, 1.0], 20000) * 0.8 + rng.normal(0, 0.1, 20000)
  fit = diagnostics.two_mode_fit(x)
  assert fit["m"] == pytest.approx(0.8, abs=0.01)
  assert fit["s"] == pytest.approx(0.1, abs=0.01)
  assert fit["ashman_d"] > 10


def test_single_gaussian_is_not_two_moded():
  x = np.random.default_rng(1).normal(0, 1, 20000)
  assert diagnostics.two_mode_fit(x)["ashman_d"] < 2.0


def test_mode_mass_by_hand():
  k = np.array([[0.5, 1.0], [-1.0, 0.1], [0.8, -2.0], [0.0, 0.3]])
  # filter 0: |k| = .5 1 .8 0, mu 0.575, band [0.2875, 0.8625] -> .5, .8 (2 of 4)
  # filter 1: |k| = 1 .1 2 .3, mu 0.85, band [0.425, 1.275] -> 1 (1 of 4)
  assert diagnostics.mode_mass(k) == pytest.approx(3 / 8)
  assert diagnostics.mode_mass(k, mu=[1.0, 1.0], rel_width=0.1) == pytest.approx(2 / 8)


def test_histograms_plot_to_png(tmp_path):
  rng = np.random.default_rng(2)
  path = tmp_path / "h.jsonl"
  with open(path, "w") as f:
    for step, spread in ((0, 0.0), (100, 0.5)):
      k = rng.normal(0, 0.2, (3, 3, 4, 8)) + spread * np.sign(rng.normal(size=(3, 3, 4, 8)))
      f.write(json.dumps(diagnostics.histogram_record(step, [("stage1/conv", k)])) + "\n")
  recs = diagnostics.read_histograms(str(path))
  assert sum(recs[0]["layers"]["stage1/conv"]["counts"]) == 288
  assert recs[1]["layers"]["stage1/conv"]["ashman_d"] > recs[0]["layers"]["stage1/conv"]["ashman_d"]
  (png,) = diagnostics.plot_latent_histograms(str(path), str(tmp_path / "plots"))
  assert os.path.getsize(png) > 1000 and open(png, "rb").read(4) == b"\x89PNG"
