"""The BONN gradient probe: at initialisation, with the paper's λ, the kernel loss's
gradient outweighs the cross-entropy's on most latent weights (why Adam collapses)."""

import json

import numpy as np

import pytest

from benchmarks import bonn_gradients


def test_kernel_loss_gradient_dominates_at_init_and_files_are_written(tmp_path):
  rows = {w: bonn_gradients.gradient_balance(dataset="mnist", width=4, batch_size=16,
                                             lam=1e-4, nu=1e-4, w_start=w)
          for w in ("inverse_mean_abs", "one")}
  assert rows["one"]["mean_w"] == pytest.approx(1.0)
  assert rows["inverse_mean_abs"]["mean_w"] > 5  # 1/mean|k| of small latent weights
  # The w = 1/mean|k| start pulls w² ≈ (1/mean|k|)² times harder on k ...
  assert (rows["inverse_mean_abs"]["median_abs_grad_kernel"]
          > 5 * rows["one"]["median_abs_grad_kernel"])
  # ... and outweighs the cross-entropy on most weights (98.7% at width 16 on
  # Fashion-MNIST, benchmarks/results/bonn_gradients.md; narrower here).
  assert rows["inverse_mean_abs"]["fraction_kernel_larger"] > 0.75
  with pytest.raises(ValueError, match="w_start='half'"):
    bonn_gradients.gradient_balance(dataset="mnist", width=4, batch_size=4, lam=1e-4,
                                    nu=1e-4, w_start="half")


def test_main_writes_the_table(tmp_path, monkeypatch):
  calls = []

  def fake(**kw):
    calls.append(kw)
    return {"w_start": kw["w_start"], "median_abs_grad_ce": 1e-5,
            "median_abs_grad_kernel": 1e-3, "fraction_kernel_larger": 0.9, "mean_w": 1.0,
            "latent_weights": 10}
  monkeypatch.setattr(bonn_gradients, "gradient_balance", fake)
  bonn_gradients.main(["--dataset=mnist", "--width=4", f"--out={tmp_path}"])
  assert [c["w_start"] for c in calls] == ["inverse_mean_abs", "one"]
  assert calls[0]["lam"] == 1e-4  # the config's λ
  data = json.load(open(tmp_path / "bonn_gradients.json"))
  assert len(data["rows"]) == 2
  assert "| one | 1.00 | 1.00e-05 | 1.00e-03 | 90.0% |" in open(
      tmp_path / "bonn_gradients.md").read()


def test_term_split_against_hand_computed_gradients():
  """The kernel loss's gradient split into its reconstruction term and its ν-terms,
  and the per-filter mean, against the closed forms per weight:
  reconstruction λ·w·(w∘k − sign k), ν-terms λ·ν·(k ∓ μ)/σ², per-filter mean the
  reconstruction's divided by kh·kw·c_in (compared as sorted multisets: the layers'
  order in the model's state is not the order bonn.layers walks)."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from bnnjax import models, nn
  from bnnjax.methods import bonn
  lam, nu = 1e-4, 1e-2
  model = models.get_model("resnet18", num_classes=10, input_shape=(12, 12, 1),
                           spec=nn.method_spec("bonn"), rngs=nnx.Rngs(0), width=4)
  for i, l in enumerate(bonn.layers(model)):  # σ away from its start, per filter
    l.bonn_log_sigma[...] = l.bonn_log_sigma[...] - 0.1 * i
  x = jax.random.normal(jax.random.key(1), (4, 12, 12, 1))
  y = jnp.arange(4)
  got = bonn_gradients.term_arrays(model, x, y, lam=lam, nu=nu)
  rec, prior, mean = [], [], []
  for l in bonn.layers(model):
    k = np.asarray(l.kernel[...])
    w = np.asarray(l.bonn_modulation[...])[..., None, None]  # (kh, kw) over channels
    s = np.where(k >= 0, 1.0, -1.0)
    mu, sigma = np.asarray(l.bonn_mu[...]), np.exp(np.asarray(l.bonn_log_sigma[...]))
    r = lam * w * (w * k - s)
    rec.append(r.ravel())
    prior.append((lam * nu * (k - s * mu) / sigma ** 2).ravel())
    mean.append((r / (k.size // k.shape[-1])).ravel())
  for name, want in (("reconstruction", rec), ("prior", prior), ("kernel_mean", mean)):
    want = np.sort(np.concatenate(want))  # float32 rounding of w∘k − sign k: atol
    np.testing.assert_allclose(np.sort(got[name]), want, rtol=1e-5,
                               atol=1e-5 * np.abs(want).max(), err_msg=name)
  assert got["ce"].shape == got["k"].shape and np.abs(got["ce"]).max() > 0
  summary = bonn_gradients.term_gradients(model, x, y, lam=lam, nu=nu)
  assert summary["median_abs_grad_kernel_mean"] < summary["median_abs_grad_reconstruction"]
  assert summary["min_sigma"] == pytest.approx(float(np.min(got["sigma"])))


def test_trained_runs_are_refused_unless_they_exist(tmp_path, capsys):
  with pytest.raises(SystemExit):
    bonn_gradients.main([f"--trained={tmp_path / 'nosuch'}", f"--out={tmp_path}"])
  assert "--trained=" in capsys.readouterr().err
