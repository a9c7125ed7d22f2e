"""BONN ablation (seed Table 2) on real embedded data: which loss helps?

Four points of the ``configs/bonn_resnet18.py`` sweep (``experiments.sweep``), trained
with the same budget and seeds: no Bayesian loss (λ = θ = 0), kernel loss only (λ),
feature loss only (θ), both, with the config's λ and θ (the paper's 1e-4 and 1e-3).
It reports test top-1 and how two-moded the latent weights ended up (Ashman's D of a
symmetric two-Gaussian fit, mean over binary layers; see
``bnnjax.analysis.bimodality``). The paper's numbers are ImageNet ResNet-18 top-1:
56.3 / 58.3 / 58.4 / 59.3; ours are a narrow ResNet-18 on Fashion-MNIST for a CPU
budget, so only the ordering is comparable.

    python -m benchmarks.bonn_ablation                # ~10 min on 2 CPU cores
    python -m benchmarks.bonn_ablation --seeds=0,1,2 --steps=900
    python -m benchmarks.bonn_ablation --kernel_loss=coupled   # the loss inside Adam

``--kernel_loss``: ``config`` (default) trains the kernel loss as the config does
(decoupled under its Adam default, docs/bonn.md#investigation); ``coupled`` adds its
gradient to the cross-entropy's before Adam (the form that freezes the binary weights
and raises Ashman's D); ``decoupled`` applies it after Adam at the learning rate.

The runs are trained by ``experiments.sweep.run_sweep``: each lives in
``<workdir>/<variant>_seed<s>``, is resumed from its checkpoint when the command is run
again, and is only read once finished (a finished run trained with other settings is
refused, naming the fields). ``<workdir>/sweep_results.{csv,md}`` is the sweep's own
table; ``<out>/bonn_ablation.{md,json}`` the ablation's. The whole λ × θ grid is
``python -m experiments.sweep --config=configs/bonn_resnet18.py --workdir=...``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import numpy as np

from benchmarks import sweep_runs

PAPER = {"none": 56.3, "kernel": 58.3, "feature": 58.4, "both": 59.3}
NAMES = {"none": "none", "kernel": "kernel loss only", "feature": "feature loss only",
         "both": "kernel + feature"}


def table2_points(dataset: str):
  """``(config, {variant: sweep point})``: ``bonn_resnet18.get_config`` and the four
  points of its ``sweep()`` with λ ∈ {0, config λ} and θ ∈ {0, config θ}."""
  from configs import bonn_resnet18
  from experiments import sweep
  arg = f"dataset={dataset}"
  config = bonn_resnet18.get_config(arg)
  lam, theta = config.bonn_lambda, config.bonn_theta
  wanted = {"none": (0.0, 0.0), "kernel": (lam, 0.0), "feature": (0.0, theta),
            "both": (lam, theta)}
  points = sweep.load_sweep(bonn_resnet18.__file__, arg)
  by_pair = {(p.overrides.get("bonn_lambda"), p.overrides.get("bonn_theta")): p
             for p in points}
  missing = [v for v, pair in wanted.items() if pair not in by_pair]
  if missing:
    raise ValueError(f"configs/bonn_resnet18.py's sweep() has no point for {missing} "
                     f"(λ = {lam}, θ = {theta}); its points are {sorted(by_pair)}.")
  return config, {v: by_pair[pair] for v, pair in wanted.items()}


KERNEL_LOSS = ("config", "coupled", "decoupled")


def ablation_points(table2: dict, *, seeds, steps: int, width: int,
                    test_examples: int | None, kernel_loss: str = "config",
                    train_examples: int | None = None) -> list:
  """The sweep points to train: each Table 2 point once per seed, with this
  benchmark's budget; named ``<variant>_seed<s>``. ``kernel_loss`` (one of
  :data:`KERNEL_LOSS`) overrides ``bonn_kernel_decoupled`` unless it is ``config``."""
  from experiments import sweep
  budget = {"num_train_steps": steps, "model_kwargs.width": width,
            "num_train_examples": train_examples, "num_test_examples": test_examples,
            "histogram_every_steps": steps,  # records at step 0 and at the end
            "checkpoint_every_steps": steps, "log_every_steps": max(steps // 10, 1),
            "progress": False}
  if kernel_loss != "config":
    budget["bonn_kernel_decoupled"] = kernel_loss == "decoupled"
  return [sweep.Point(f"{variant}_seed{seed}",
                      {**point.overrides, "seed": seed, **budget})
          for variant, point in table2.items() for seed in seeds]


def mean_ashman_d(workdir: str) -> tuple[float, float]:
  """Mean Ashman's D over binary layers at the first and last histogram record."""
  from bnnjax import analysis
  recs = analysis.read_histograms(os.path.join(workdir, "latent_histograms.jsonl"))
  mean_d = lambda rec: float(np.mean([l["ashman_d"] for l in rec["layers"].values()]))
  return mean_d(recs[0]), mean_d(recs[-1])


def run(args) -> dict:
  """Trains (or reads) every point through ``experiments.sweep.run_sweep``.

  Returns ``(rows, config)``: the ablation table's row of each variant (top-1 per seed
  and its mean ± std, mean Ashman's D at the first and last histogram record, the
  seconds of the runs trained now, each run's sweep status, the paper's top-1) and the
  ``bonn_resnet18`` config the points override."""
  config, table2 = table2_points(args.dataset)
  table2 = {v: table2[v] for v in args.variants}
  points = ablation_points(table2, seeds=args.seeds, steps=args.steps, width=args.width,
                           test_examples=args.test_examples,
                           kernel_loss=args.kernel_loss,
                           train_examples=args.train_examples)
  swept, seconds = sweep_runs.train_points(config, points, args.workdir,
                                           "benchmarks.bonn_ablation")
  rows = {}
  for variant, point in table2.items():
    names = [f"{variant}_seed{seed}" for seed in args.seeds]
    accs = [100 * swept[n]["test/top1"] for n in names]
    ds = [mean_ashman_d(os.path.join(args.workdir, n)) for n in names]
    rows[variant] = {
        "sweep_point": point.name, "top1": accs, "top1_mean": float(np.mean(accs)),
        "top1_std": float(np.std(accs)),
        "ashman_d_start": float(np.mean([d[0] for d in ds])),
        "ashman_d_end": float(np.mean([d[1] for d in ds])),
        "seconds": [seconds[n] for n in names if n in seconds],
        "status": [swept[n]["status"] for n in names], "paper_top1": PAPER[variant]}
  return rows, config


def write(rows: dict, config, args, out_dir: str) -> None:
  """Writes ``bonn_ablation.json`` (settings and rows) and ``bonn_ablation.md``."""
  os.makedirs(out_dir, exist_ok=True)
  command = "python -m benchmarks.bonn_ablation " + " ".join(sys.argv[1:])
  settings = {k: v for k, v in vars(args).items() if k != "out"}
  decoupled = (config.bonn_kernel_decoupled if args.kernel_loss == "config"
               else args.kernel_loss == "decoupled")
  settings.update(lam=config.bonn_lambda, theta=config.bonn_theta,
                  kernel_decoupled=bool(decoupled))
  with open(os.path.join(out_dir, "bonn_ablation.json"), "w") as f:
    json.dump({"command": command, "settings": settings, "rows": rows,
               "date": datetime.datetime.now().isoformat(timespec="seconds")}, f, indent=2)
  lines = [
      "# BONN ablation (seed Table 2)", "",
      f"Command: `{command.strip()}`", "",
      f"ResNet-18 (BONN layers, width {args.width}) on {args.dataset}, {args.steps} steps "
      f"of batch {config.batch_size}, seeds {args.seeds}; λ = {config.bonn_lambda}, "
      f"θ = {config.bonn_theta}, ν = {config.bonn_nu}; the kernel loss "
      + ("decoupled (applied after Adam at the learning rate)" if decoupled else
         "coupled (its gradient added to the cross-entropy's before Adam)")
      + ". Paper: ImageNet ResNet-18, 70 epochs.", "",
      "| losses | paper top-1 (ImageNet) | ours top-1 | Ashman's D start → end | time/run |",
      "|---|---|---|---|---|",
  ]
  for v, r in rows.items():
    time_text = f"{np.mean(r['seconds']):.0f} s" if r["seconds"] else "–"
    lines.append(
        f"| {NAMES[v]} | {r['paper_top1']:.1f} | {r['top1_mean']:.2f} ± {r['top1_std']:.2f} "
        f"| {r['ashman_d_start']:.2f} → {r['ashman_d_end']:.2f} | {time_text} |")
  failed = [s for r in rows.values() for s in r["status"] if s.startswith("failed")]
  lines += ["", "Ashman's D > 2 means two cleanly separated modes of latent weights; the "
            "kernel loss is what should raise it. Time/run is this invocation's wall time "
            "on a shared machine, over the runs it trained; a run finished earlier in the "
            "workdir is only read (– when all were)."]
  if failed:
    lines += ["", f"{len(failed)} run(s) stopped on a NaN/Inf loss: " + "; ".join(failed)]
  with open(os.path.join(out_dir, "bonn_ablation.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", default="fashion_mnist")
  p.add_argument("--steps", type=int, default=450)
  p.add_argument("--width", type=int, default=16)
  p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
  p.add_argument("--train_examples", type=int, default=None,
                 help="train on the first N training examples (default: all)")
  p.add_argument("--test_examples", type=int, default=None)
  p.add_argument("--variants", default=",".join(PAPER),
                 type=lambda s: [v.strip() for v in s.split(",") if v.strip()],
                 help=f"comma-separated subset of {list(PAPER)} (default: all four)")
  p.add_argument("--kernel_loss", default="config", choices=KERNEL_LOSS,
                 help="how the kernel loss is applied: as the config does (default), "
                      "coupled (inside Adam) or decoupled (after Adam)")
  p.add_argument("--workdir", default=os.path.join("runs", "bonn_ablation"))
  p.add_argument("--out", default=os.path.join("benchmarks", "results"))
  args = p.parse_args(argv)
  unknown = [v for v in args.variants if v not in PAPER]
  if unknown or not args.variants:
    p.error(f"--variants={','.join(args.variants)}; allowed values are a comma-separated "
            f"subset of {list(PAPER)}.")
  rows, config = run(args)
  write(rows, config, args, args.out)
  print(open(os.path.join(args.out, "bonn_ablation.md")).read())


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  sweep_runs.command(main)
