"""How strongly BONN's Bayesian kernel loss pulls on the latent weights, against the
cross-entropy, at the start of training (issue 14's investigation; docs/bonn.md).

For the ``configs/bonn_resnet18.py`` model on one real training batch, it computes per
latent weight the gradient of the cross-entropy and of the weighted kernel loss
``(λ/2) Σ_l L_K^l`` (:func:`bnnjax.losses.bayesian_kernel_loss`), and reports their
medians and the fraction of weights where the kernel loss's gradient is the larger.
Adam normalises each weight's gradient, so a weight whose gradient is dominated by the
kernel loss moves about ``lr`` per step toward the kernel loss's optimum
``k = sign(k)/w`` whatever λ is; SGD moves it by ``lr · gradient``.

Two starts of the modulation ``w`` are compared: the project's ``1/mean|k|`` (so
``w ∘ k`` starts at the scale of ``sign(k)``) and ``1``.

    python -m benchmarks.bonn_gradients [--dataset=fashion_mnist] [--width=16]

Writes ``bonn_gradients.{json,md}`` to ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import numpy as np


def gradient_balance(*, dataset: str, width: int, batch_size: int, lam: float, nu: float,
                     w_start: str, seed: int = 0) -> dict:
  """Medians of ``|∂CE/∂k|`` and ``|∂((λ/2)ΣL_K)/∂k|`` over every latent weight of a
  BONN ResNet-18 at initialisation, on the first training batch of ``dataset``, and
  the fraction of weights where the kernel loss's is larger. ``w_start`` is
  ``"inverse_mean_abs"`` (the layers' own start) or ``"one"``."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  from bnnjax import data as data_lib
  from bnnjax import models
  from bnnjax import nn
  from bnnjax.losses import bayesian
  from bnnjax.methods import bonn

  info = data_lib.dataset_info(dataset)
  pipe = data_lib.make_pipeline(dataset, split="train", batch_size=batch_size, train=True,
                                seed=seed)
  batch = next(iter(pipe.iterate(0)))
  model = models.get_model("resnet18", num_classes=info.num_classes,
                           input_shape=tuple(batch["image"].shape[1:]),
                           spec=nn.method_spec("bonn"), rngs=nnx.Rngs(seed), width=width)
  layers = bonn.layers(model)
  if w_start == "one":
    for l in layers:
      l.bonn_modulation[...] = jnp.ones_like(l.bonn_modulation[...])
  elif w_start != "inverse_mean_abs":
    raise ValueError(f"w_start={w_start!r}; allowed values are 'inverse_mean_abs', 'one'.")
  x, y = jnp.asarray(batch["image"]), jnp.asarray(batch["label"])

  def ce(m):
    return optax.softmax_cross_entropy_with_integer_labels(m(x, train=True), y).mean()

  def kernel(m):
    return 0.5 * lam * sum(bayesian.bayesian_kernel_loss(
        l.kernel[...], l.bonn_modulation[...], l.bonn_mu[...], l.bonn_log_sigma[...], nu=nu)
        for l in bonn.layers(m))

  def latent(grads):
    return np.concatenate([np.abs(np.asarray(v)).reshape(-1) for v in
                           jax.tree.leaves(nnx.state(grads, nn.LatentWeight))])
  g_ce = latent(nnx.jit(nnx.grad(ce))(model))
  g_k = latent(nnx.jit(nnx.grad(kernel))(model))
  return {"w_start": w_start, "median_abs_grad_ce": float(np.median(g_ce)),
          "median_abs_grad_kernel": float(np.median(g_k)),
          "fraction_kernel_larger": float(np.mean(g_k > g_ce)),
          "mean_w": float(np.mean([np.mean(np.asarray(l.bonn_modulation[...]))
                                   for l in layers])),
          "latent_weights": int(g_ce.size)}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", default="fashion_mnist")
  p.add_argument("--width", type=int, default=16)
  p.add_argument("--batch_size", type=int, default=128)
  p.add_argument("--out", default=os.path.join("benchmarks", "results"))
  args = p.parse_args(argv)
  from configs import bonn_resnet18
  config = bonn_resnet18.get_config(f"dataset={args.dataset}")
  rows = [gradient_balance(dataset=args.dataset, width=args.width,
                           batch_size=args.batch_size, lam=config.bonn_lambda,
                           nu=config.bonn_nu, w_start=w)
          for w in ("inverse_mean_abs", "one")]
  os.makedirs(args.out, exist_ok=True)
  command = "python -m benchmarks.bonn_gradients " + " ".join(sys.argv[1:] if argv is None
                                                               else argv)
  with open(os.path.join(args.out, "bonn_gradients.json"), "w") as f:
    json.dump({"command": command.strip(), "settings": vars(args) | {
        "lam": config.bonn_lambda, "nu": config.bonn_nu}, "rows": rows,
        "date": datetime.datetime.now().isoformat(timespec="seconds")}, f, indent=2)
  lines = ["# BONN: kernel-loss gradient against cross-entropy at initialisation", "",
           f"Command: `{command.strip()}`", "",
           f"BONN ResNet-18 (width {args.width}) at initialisation, one training batch of "
           f"{args.batch_size} {args.dataset} images; λ = {config.bonn_lambda}, "
           f"ν = {config.bonn_nu}. Per latent weight: |∂CE/∂k| against "
           "|∂((λ/2)·Σ L_K)/∂k|.", "",
           "| w starts at | mean w | median \\|∂CE/∂k\\| | median \\|∂(λ/2 ΣL_K)/∂k\\| "
           "| weights where the kernel loss's gradient is larger |", "|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['w_start']} | {r['mean_w']:.2f} | {r['median_abs_grad_ce']:.2e} "
                 f"| {r['median_abs_grad_kernel']:.2e} | {100 * r['fraction_kernel_larger']:.1f}% |")
  lines += ["", "Adam divides each weight's gradient by its own running scale, so where the "
            "kernel loss's gradient is the larger one the weight moves about `lr` per step "
            "toward `sign(k)/w`, and stops flipping (docs/bonn.md#investigation)."]
  with open(os.path.join(args.out, "bonn_gradients.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
