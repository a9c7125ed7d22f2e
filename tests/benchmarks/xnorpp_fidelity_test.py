"""XNOR-Net++ Table 2 fidelity benchmark on a small layer (a few seconds on CPU)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import xnorpp_fidelity as xf
from bnnjax.nn import method_spec

# 8 filters, 8 channels, 8×8 input: same geometry as the paper's layer, 64× cheaper.
SMALL = dict(reps=2, steps=300, filters=8, channels=8, size=8, batch_size=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  out = tmp_path_factory.mktemp("results")
  argv = [f"--{k}={v}" for k, v in SMALL.items()] + [f"--out={out}"]
  return xf.main(argv), out


def test_ordering_direct_sign_xnor_learned(run):
  results, _ = run
  t = {m: results["table"][m]["mean"] for m in xf.METHODS}
  assert t["direct_sign"] > 20 * t["xnor"]
  for case in xf.CASES:
    assert t[f"xnorpp_{case}"] < t["xnor"], (case, t)


def test_learned_gamma_losses_flatten(run):
  results, _ = run
  for m, conv in results["convergence"].items():
    losses = list(conv["loss_at_step"].values())
    assert losses[-1] < 0.2 * losses[0], m
    assert abs(conv["rel_change_last_10pct"]) < 0.05, m


def test_results_written(run):
  results, out = run
  data = json.loads((out / "xnorpp_fidelity.json").read_text())
  assert data["config"] == {**xf.Config().__dict__, **SMALL}
  assert data["command"].startswith("python -m benchmarks.xnorpp_fidelity --reps=2")
  for m in xf.METHODS:
    row = data["table"][m]
    assert row["paper_mean"] == xf.PAPER_TABLE2[m][0]
    assert len(row["per_rep"]) == SMALL["reps"]
    assert np.isclose(row["mean"], results["table"][m]["mean"])
  md = (out / "xnorpp_fidelity.md").read_text()
  assert "| Baseline XNOR" in md and "0.095 ± 0.002" in md
  assert "--reps=2" in md


def test_fit_gamma_trains_only_scale_factors():
  cfg = xf.Config(**{**SMALL, "steps": 20})
  w, x, _ = xf.sample_problem(jax.random.key(1), cfg)
  y = xf.make_conv(w, method_spec("fp"), cfg)(x)
  layer = xf.make_conv(w, method_spec("xnorpp_4"), cfg)
  gamma0 = layer.folded_scale()
  trained, losses = jax.jit(xf.fit_gamma, static_argnums=3)(layer, x, y, cfg)
  assert losses.shape == (20,)
  np.testing.assert_array_equal(trained.kernel[...], w)
  assert not jnp.allclose(trained.folded_scale(), gamma0)
  assert trained.folded_scale().shape == (cfg.size, cfg.size, cfg.filters)


def test_config_rejects_unknown_loss():
  with pytest.raises(ValueError, match="loss"):
    xf.Config(loss="huber")
