"""ReActNet's learnable thresholds against XNOR-Net and XNOR-Net++ at the same budget.

The points of the ``configs/reactnet_resnet18.py`` sweep (``experiments.sweep``): the
Bi-Real ResNet-18 with RSign and RPReLU on XNOR-Net layers (``reactnet``), and plain
``xnor`` and ``xnorpp_1`` (XNOR-Net++ Γ case 1), per seed, all trained with the
config's budget (width 16, two epochs of batch 128, Adam 2e-3 with cosine decay) on
Fashion-MNIST. It reports test top-1 as mean ± std over the seeds (population std, as
``benchmarks.bonn_ablation``) and each method's difference from ``xnor``.

    python -m benchmarks.reactnet_compare                # 9 runs, about 1-1.5 h on 2 CPU cores
    python -m benchmarks.reactnet_compare --smoke        # plumbing check, seconds

The runs are trained by ``experiments.sweep.run_sweep``: each lives in
``<workdir>/<variant>_seed<s>``, is resumed from its checkpoint when the command is run
again, and is only read once finished (a finished run trained with other settings is
refused, naming the fields). ``<workdir>/sweep_results.{csv,md}`` is the sweep's own
table; ``<out>/reactnet_compare.{md,json}`` the comparison's. ``--smoke`` trains a few
steps of a width-4 model, seed 0, on 256 MNIST images, into ``<workdir>/smoke`` and
writes its table there (never over ``benchmarks/results``) unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys

import numpy as np

from benchmarks import cli
from benchmarks import sweep_runs

STEM = "reactnet_compare"
NAMES = {"reactnet": "ReActNet (xnor + RSign + RPReLU)", "xnor": "XNOR-Net",
         "xnorpp_1": "XNOR-Net++ (Γ case 1)"}
SMOKE = {"steps": 3, "width": 4, "seeds": [0], "train_examples": 256,
         "test_examples": 64, "dataset": "mnist"}


def comparison_points(*, dataset: str, seeds, steps: int | None, width: int | None,
                      train_examples: int | None, test_examples: int | None):
  """``(config, points)``: ``reactnet_resnet18.get_config`` and the points of its
  ``sweep()`` for ``seeds``, each with this benchmark's budget overrides (only those
  given; the config's budget otherwise)."""
  from configs import reactnet_resnet18
  from experiments import sweep
  arg = f"dataset={dataset},seeds={max(seeds) + 1}"
  config = reactnet_resnet18.get_config(arg)
  budget = {"progress": False}
  if steps is not None:
    budget.update(num_train_steps=steps, checkpoint_every_steps=steps,
                  log_every_steps=max(steps // 10, 1))
  if width is not None:
    budget["model_kwargs.width"] = width
  if train_examples is not None:
    budget["num_train_examples"] = train_examples
  if test_examples is not None:
    budget["num_test_examples"] = test_examples
  points = [sweep.Point(p.name, {**p.overrides, **budget})
            for p in sweep.load_sweep(reactnet_resnet18.__file__, arg)
            if p.overrides["seed"] in seeds]
  return config, points


def variants_of(points) -> list[str]:
  """The variants (point names without ``_seed<s>``), in the sweep's order."""
  return list(dict.fromkeys(p.name.rsplit("_seed", 1)[0] for p in points))


def run(args) -> tuple[dict, object]:
  """Trains (or reads) every point through ``experiments.sweep.run_sweep``.

  Returns ``(rows, config)``: per variant, test top-1 per seed (%), its mean ± std,
  the difference of the mean from ``xnor``'s, the seconds of the runs trained now and
  each run's sweep status; and the config the points override."""
  config, points = comparison_points(
      dataset=args.dataset, seeds=args.seeds, steps=args.steps, width=args.width,
      train_examples=args.train_examples, test_examples=args.test_examples)
  swept, seconds = sweep_runs.train_points(config, points, args.workdir,
                                           f"benchmarks.{STEM}")
  rows = {}
  for variant in variants_of(points):
    names = [f"{variant}_seed{seed}" for seed in args.seeds]
    accs = [100 * swept[n]["test/top1"] for n in names]
    point = next(p for p in points if p.name == names[0])
    rows[variant] = {
        "method": point.overrides["method"],
        "reactnet": point.overrides["model_kwargs.reactnet"],
        "top1": accs, "top1_mean": float(np.mean(accs)), "top1_std": float(np.std(accs)),
        "seconds": [seconds[n] for n in names if n in seconds],
        "status": [swept[n]["status"] for n in names]}
  if "xnor" in rows:
    for r in rows.values():
      r["delta_vs_xnor"] = r["top1_mean"] - rows["xnor"]["top1_mean"]
  return rows, config


def format_markdown(results: dict) -> str:
  """The comparison table (mean ± std over seeds) as markdown."""
  s = results["settings"]
  lines = [
      "# ReActNet's RSign and RPReLU vs XNOR-Net and XNOR-Net++ (issue 17)", "",
      f"Command: `{results['command']}`", "",
      f"Bi-Real ResNet-18 (width {s['width']}, {s['budget']}) on {s['dataset']}, seeds "
      f"{s['seeds']}, Adam {s['lr']} with {s['schedule']} decay; every method binarises "
      "the same 16 convs (stem, shortcuts and classifier full precision). ReActNet = "
      "XNOR-Net layers (ste_sign, α, K) + RSign's shift before each sign + RPReLU after "
      "each residual sum (docs/reactnet.md). Top-1 is mean ± population std over the "
      "seeds.", "",
      "| method | top-1 (%) | Δ vs xnor | per seed | time/run |",
      "|---|---|---|---|---|",
  ]
  for v, r in results["rows"].items():
    delta = r.get("delta_vs_xnor")
    delta_text = "–" if delta is None or v == "xnor" else f"{delta:+.2f}"
    per_seed = ", ".join(f"{a:.2f}" for a in r["top1"])
    time_text = f"{np.mean(r['seconds']):.0f} s" if r["seconds"] else "–"
    lines.append(f"| {NAMES.get(v, v)} | {r['top1_mean']:.2f} ± {r['top1_std']:.2f} | "
                 f"{delta_text} | {per_seed} | {time_text} |")
  failed = [st for r in results["rows"].values() for st in r["status"]
            if st.startswith("failed")]
  lines += ["", "Time/run is this invocation's wall time on a shared machine, over the "
            "runs it trained; a run finished earlier in the workdir is only read (– when "
            "all were)."]
  if failed:
    lines += ["", f"{len(failed)} run(s) stopped on a NaN/Inf loss: " + "; ".join(failed)]
  return "\n".join(lines) + "\n"


def results_of(rows: dict, config, args, command: str) -> dict:
  """The JSON record: command, settings (the budget actually used), rows, date."""
  steps = args.steps
  budget = (f"{steps} steps of batch {config.batch_size}" if steps is not None
            else f"{config.num_epochs:g} epochs of batch {config.batch_size}")
  settings = {
      "dataset": args.dataset, "seeds": list(args.seeds),
      "width": args.width if args.width is not None else config.model_kwargs.width,
      "budget": budget, "steps": steps, "num_epochs": config.num_epochs,
      "batch_size": config.batch_size, "lr": config.lr, "schedule": config.schedule,
      "optimizer": config.optimizer, "train_examples": args.train_examples,
      "test_examples": args.test_examples, "smoke": args.smoke}
  return {"command": command, "settings": settings, "rows": rows,
          "date": datetime.datetime.now().isoformat(timespec="seconds")}


def parse(argv) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", default="fashion_mnist")
  p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")],
                 default=[0, 1, 2])
  p.add_argument("--steps", type=int, default=None,
                 help="train steps per run (default: the config's epochs)")
  p.add_argument("--width", type=int, default=None,
                 help="ResNet-18 width (default: the config's 16)")
  p.add_argument("--train_examples", type=int, default=None)
  p.add_argument("--test_examples", type=int, default=None)
  p.add_argument("--workdir", default=os.path.join("runs", STEM))
  p.add_argument("--out", default=None,
                 help="directory of reactnet_compare.{md,json} (default "
                      "benchmarks/results; <workdir> with --smoke)")
  p.add_argument("--smoke", action="store_true",
                 help=f"a plumbing check: {SMOKE} unless given, under <workdir>/smoke")
  args = p.parse_args(argv)
  sweep_runs.apply_smoke(args, argv, SMOKE)
  if not args.seeds or min(args.seeds) < 0:
    p.error(f"--seeds={args.seeds}: give seeds >= 0, e.g. --seeds=0,1,2.")
  return args


def main(argv=None) -> dict:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse(argv)
  rows, config = run(args)
  results = results_of(rows, config, args,
                       shlex.join(["python", "-m", f"benchmarks.{STEM}", *argv]))
  md_path, json_path = cli.write_results(results, os.path.join(args.out, STEM),
                                         format_markdown)
  print(format_markdown(results))
  print(f"wrote {md_path} and {json_path}")
  return results


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  sweep_runs.command(main)
