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

``--trained=RUN[,RUN]`` adds the same balance at the end of training, read from each
run's last checkpoint (:func:`trained_balance`), with the kernel loss split into its
reconstruction term ``||k̂ − w∘k||²`` and its ν-terms (the two-mode prior, where ``σ``
enters), the pull of a per-filter mean (``bonn_kernel_normalise=
kernel_mean``), and how far ``σ`` shrank (issue 14's σ floor / stop-gradient
hypotheses: they can matter only if the ν-terms' pull does).

    python -m benchmarks.bonn_gradients [--dataset=fashion_mnist] [--width=16]
    python -m benchmarks.bonn_gradients --trained=runs/reproduce/bonn_resnet18/both_seed1

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


def term_arrays(model, x, y, *, lam: float, nu: float) -> dict:
  """Per latent weight of ``model``'s BONN layers (flattened, in ``nnx.state`` order),
  on the batch ``(x, y)``: ``ce`` = ``∂CE/∂k``; the kernel loss ``(λ/2)ΣL_K``'s
  gradient split into ``reconstruction`` (``ν = 0``) and ``prior`` (its ν-terms alone,
  the loss at ``w = 0``, where the reconstruction term is constant in k); ``kernel_mean`` = the
  reconstruction term's gradient with each layer's ``L_K`` divided by the elements of
  one filter; ``k`` the latent weights; ``sigma`` the prior's σ of every filter."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  from bnnjax import nn
  from bnnjax.losses import bayesian
  from bnnjax.methods import bonn

  def ce(m):
    return optax.softmax_cross_entropy_with_integer_labels(m(x, train=True), y).mean()

  def kernel(m, nu_, normalise="sum", modulation=True):
    # modulation=False: w = 0, so the reconstruction term ||k̂ − 0||² (k̂ a constant
    # sign) has no gradient in k and only the ν-terms' gradient is left, computed
    # directly rather than as a difference that float32 cancels
    return 0.5 * lam * sum(bayesian.bayesian_kernel_loss(
        l.kernel[...], l.bonn_modulation[...] * (1.0 if modulation else 0.0),
        l.bonn_mu[...], l.bonn_log_sigma[...], nu=nu_)
        / bonn.kernel_loss_count(l.kernel.shape, normalise) for l in bonn.layers(m))

  def latent(grads):
    return np.concatenate([np.asarray(v).reshape(-1) for v in
                           jax.tree.leaves(nnx.state(grads, nn.LatentWeight))])
  grad = lambda f: latent(nnx.jit(nnx.grad(f))(model))
  return {"ce": grad(ce), "reconstruction": grad(lambda m: kernel(m, 0.0)),
          "prior": grad(lambda m: kernel(m, nu, modulation=False)),
          "kernel_mean": grad(lambda m: kernel(m, 0.0, normalise="kernel_mean")),
          "k": latent(nnx.state(model, nn.LatentWeight)),
          "sigma": np.concatenate([np.exp(np.asarray(l.bonn_log_sigma[...]))
                                   for l in bonn.layers(model)])}


def term_gradients(model, x, y, *, lam: float, nu: float) -> dict:
  """:func:`term_arrays` summarised: medians of each gradient's magnitude (and the
  ν-terms' largest), the fraction of weights where the reconstruction term (summed,
  or a per-filter mean) outweighs the cross-entropy, and the prior's ``σ`` against
  the weights (``median σ / median |k|``, ``min σ``)."""
  a = {k: np.abs(v) for k, v in term_arrays(model, x, y, lam=lam, nu=nu).items()}
  g_ce, g_rec, g_prior, g_mean = a["ce"], a["reconstruction"], a["prior"], a["kernel_mean"]
  sigma, weights = a["sigma"], a["k"]
  return {"median_abs_grad_ce": float(np.median(g_ce)),
          "median_abs_grad_reconstruction": float(np.median(g_rec)),
          "median_abs_grad_prior": float(np.median(g_prior)),
          "max_abs_grad_prior": float(np.max(g_prior)),
          "median_abs_grad_kernel_mean": float(np.median(g_mean)),
          "fraction_reconstruction_larger": float(np.mean(g_rec > g_ce)),
          "fraction_kernel_mean_larger": float(np.mean(g_mean > g_ce)),
          "median_sigma_over_median_abs_k": float(np.median(sigma) / np.median(weights)),
          "min_sigma": float(np.min(sigma)), "median_abs_k": float(np.median(weights)),
          "latent_weights": int(g_ce.size)}


def trained_balance(workdir: str, *, batch_size: int, seed: int = 0) -> dict:
  """:func:`term_gradients` at the last checkpoint of the BONN run in ``workdir``, on
  the first training batch of its dataset, with the run's own λ and ν."""
  import jax.numpy as jnp

  from bnnjax import data as data_lib
  from bnnjax.methods import bonn
  from bnnjax.train import trainer
  model, config, _ = trainer.load_trained(workdir)
  if not bonn.layers(model):
    raise ValueError(f"--trained={workdir}: the run's method is {config.method!r}; "
                     "allowed are runs of BONN layers (method='bonn').")
  pipe = data_lib.make_pipeline(config.dataset, split="train", batch_size=batch_size,
                                train=True, seed=seed, data_dir=config.get("data_dir"))
  batch = next(iter(pipe.iterate(0)))
  out = term_gradients(model, jnp.asarray(batch["image"]), jnp.asarray(batch["label"]),
                       lam=config.bonn_lambda, nu=config.bonn_nu)
  results = os.path.join(workdir, "results.json")
  steps = json.load(open(results)).get("step") if os.path.exists(results) else None
  return {"run": workdir, "steps": steps, "lam": config.bonn_lambda,
          "nu": config.bonn_nu, "theta": config.bonn_theta,
          "decoupled": bool(config.get("bonn_kernel_decoupled", False)), **out}


def trained_markdown(rows) -> list[str]:
  """The ``--trained`` section of bonn_gradients.md."""
  lines = ["", "## At the end of training", "",
           "Per latent weight, on one training batch, at each run's last checkpoint "
           "(`--trained`): the kernel loss `(λ/2)·Σ L_K` split into its reconstruction "
           "term and its ν-terms (the two-mode prior in which σ enters), and the "
           "reconstruction term with a per-filter mean (`bonn_kernel_normalise="
           "kernel_mean`).", "",
           "| run | steps | median \|∂CE/∂k\| | reconstruction | ν-terms (max) "
           "| per-filter mean | larger than CE: sum / per-filter mean "
           "| median σ / median \|k\| (min σ) |", "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| `{r['run']}` | {r['steps'] or '–'} | {r['median_abs_grad_ce']:.2e} "
        f"| {r['median_abs_grad_reconstruction']:.2e} "
        f"| {r['median_abs_grad_prior']:.2e} ({r['max_abs_grad_prior']:.2e}) "
        f"| {r['median_abs_grad_kernel_mean']:.2e} "
        f"| {100 * r['fraction_reconstruction_larger']:.1f}% / "
        f"{100 * r['fraction_kernel_mean_larger']:.1f}% "
        f"| {r['median_sigma_over_median_abs_k']:.2f} ({r['min_sigma']:.2e}) |")
  lines += ["", "Decoupled (the configs' default under Adam) the kernel loss moves a "
            "weight by `lr` × its gradient per step, against about `lr` for Adam's "
            "normalised cross-entropy step; coupled, Adam scales each weight's summed "
            "gradient to about `lr`, so the kernel loss steers wherever its gradient is "
            "the larger. σ enters only the ν-terms (docs/bonn.md#investigation)."]
  return lines


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", default="fashion_mnist")
  p.add_argument("--width", type=int, default=16)
  p.add_argument("--batch_size", type=int, default=128)
  p.add_argument("--trained", default="",
                 help="comma-separated BONN run workdirs to measure at their last "
                      "checkpoint too")
  p.add_argument("--out", default=os.path.join("benchmarks", "results"))
  args = p.parse_args(argv)
  trained = [w.strip() for w in args.trained.split(",") if w.strip()]
  for w in trained:
    if not os.path.exists(os.path.join(w, "config.json")):
      p.error(f"--trained={w}: no config.json there; allowed values are workdirs of "
              "finished BONN runs.")
  from configs import bonn_resnet18
  config = bonn_resnet18.get_config(f"dataset={args.dataset}")
  rows = [gradient_balance(dataset=args.dataset, width=args.width,
                           batch_size=args.batch_size, lam=config.bonn_lambda,
                           nu=config.bonn_nu, w_start=w)
          for w in ("inverse_mean_abs", "one")]
  trained_rows = [trained_balance(w, batch_size=args.batch_size) for w in trained]
  os.makedirs(args.out, exist_ok=True)
  command = "python -m benchmarks.bonn_gradients " + " ".join(sys.argv[1:] if argv is None
                                                               else argv)
  with open(os.path.join(args.out, "bonn_gradients.json"), "w") as f:
    json.dump({"command": command.strip(), "settings": vars(args) | {
        "lam": config.bonn_lambda, "nu": config.bonn_nu}, "rows": rows,
        "trained": trained_rows,
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
  if trained_rows:
    lines += trained_markdown(trained_rows)
  with open(os.path.join(args.out, "bonn_gradients.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  main()
