"""The BONN gradient probe: at initialisation, with the paper's λ, the kernel loss's
gradient outweighs the cross-entropy's on most latent weights (why Adam collapses)."""

import json

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
