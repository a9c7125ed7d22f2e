r"""XNOR-Net++ §4.2 / Table 2: how well a binary conv approximates a real one.

The experiment (Bulat & Tzimiropoulos, XNOR-Net++, §4.2;
docs/xnorpp.md#fidelity-experiment): a real conv layer with ``W ∈ R^{64×64×3×3}``
(Flax ``(3, 3, 64, 64)``) and an input ``I ∈ R^{64×16×16}`` (NHWC ``(1, 16, 16, 64)``),
both normal, SAME padding, stride 1.
The binary weights are fixed to ``sign(W)`` and the binary input to ``sign(I)``; the
real output ``Y = I * W`` is approximated by

* ``direct_sign``: ``sign(I) ⊛ sign(W)``, unscaled (paper 6.36 ± 0.04);
* ``xnor``: ``(sign(I) ⊛ sign(W)) ⊙ K ⊙ alpha``, analytic (paper 0.095 ± 0.002);
* ``xnorpp_1`` … ``xnorpp_4``: ``(sign(I) ⊛ sign(W)) ⊙ Γ`` with Γ of case 1-4 learned
  by Adam to match ``Y`` (paper 0.038 / ≈0.038 / 0.037 / 0.035; the case-2 row did not
  survive in the seed text, the project's notes give "≈0.038",
  docs/xnorpp.md#fidelity-experiment).

The metric is the mean L1 distance ``mean |Y − Ŷ|`` over the output elements, repeated
for ``--reps`` independent ``(W, I)`` pairs and reported as mean ± std over the
repetitions. Every layer is a :class:`bnnjax.nn.QuantConv` (``fp``, a sign/sign spec
without scale, ``method_spec("xnor")``, ``method_spec("xnorpp_<case>")``) whose
latent kernel is ``W``; only its :class:`~bnnjax.nn.ScaleFactor` parameters (Γ) are
trained, ``sign(W)`` stays fixed.

Choices the paper leaves open (all are flags; the defaults are recorded in the output):

Scale of ``W`` and ``I`` (``--w_std``, ``--i_std``; default 0.082 each).
  Only the product ``s = std(W)·std(I)`` matters. Every scaled method's error is linear
  in ``s``, while the direct-sign error is ``E|S − s·Z|`` with ``S`` the ±1 conv, which
  is minimal at ``s ≈ 2/π`` and never below ≈14.2 for this geometry (≈18.2 as
  ``s → 0``): the paper's 6.36 is unreachable at any scale, so its 6.36 and 0.095 can
  not both be matched (6.36 ≈ sqrt(2/π)·sqrt(64) is what a conv with 64 taps instead
  of 576 would give at ``s → 0``). The default std 0.082 (``s ≈ 0.0067``) is calibrated
  so that XNOR-Net's error is ≈0.095 as in the paper, which makes the learned-Γ
  numbers directly comparable to the paper's; the direct-sign row is then ≈18.2.

Loss for learning Γ (``--loss``; default ``l1``).
  The paper reports the L1 distance and says it minimises "the reconstruction error";
  minimising the reported metric itself is the most literal reading. ``--loss=l2``
  fits the mean squared error instead.

Optimiser (``--lr``, ``--steps``).
  Adam with a cosine-decayed learning rate, applied per Γ tensor in units of that
  tensor's initial RMS (``Δ = lr·rms(Γ_0)·adam_direction``). This is exactly plain
  Adam on ``Γ / rms(Γ_0)``: Adam moves every parameter by about ``lr`` per step, and
  ``alpha`` (≈1e-3…1e-1 depending on the scale flags) and the spatial ``beta``/``gamma``
  (≈1) live on different scales. Γ starts where ``QuantConv`` initialises it:
  ``alpha_o = mean|W_o|``, ``beta = gamma = 1``. The training loop is one
  ``lax.scan`` over the Adam steps under ``jax.jit``; the loss of every step is kept,
  and its flattening (relative change over the last 10 % of steps) is reported.

Besides the paper's protocol (Γ fitted to and evaluated on the same input ``I``) the
table also reports every method on a fresh input ``I'`` drawn from the same
distribution, with the same ``W`` and the learned Γ: case 2 has one parameter per
output element, so on the fitting input it matches ``Y`` everywhere except where the
±1 conv is 0 (its floor, ``mean |Y|·1{S=0}``, is ≈0.0034 at the default scale), and it
generalises worst of all.

Usage::

  python -m benchmarks.xnorpp_fidelity --reps=100 --steps=3000 --out=benchmarks/results

writes ``xnorpp_fidelity.md`` and ``xnorpp_fidelity.json`` to ``--out`` (overwriting
the previous run's). The defaults are the paper's 100 repetitions and 3000 Adam steps
(the losses are flat well before); the sign convs are loop-invariant, so XLA hoists
them out of the training loop and the whole run takes well under a minute on 2 CPU
cores.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks import cli
from bnnjax.nn import QuantConv
from bnnjax.nn import QuantSpec
from bnnjax.nn import ScaleFactor
from bnnjax.nn import method_spec

CASES = (1, 2, 3, 4)
METHODS = ("direct_sign", "xnor") + tuple(f"xnorpp_{c}" for c in CASES)
LABELS = {
    "direct_sign": "Direct binarization `sign(I) ⊛ sign(W)`",
    "xnor": "Baseline XNOR `⊙ K ⊙ α`",
    "xnorpp_1": "Case 1: α ∈ R^o",
    "xnorpp_2": "Case 2: α ∈ R^{o×h_out×w_out}",
    "xnorpp_3": "Case 3: α ⊗ β, β ∈ R^{h_out×w_out}",
    "xnorpp_4": "Case 4: α ⊗ β ⊗ γ",
}
# XNOR-Net++ Table 2 (mean ± std of the L1 distance over 100 repetitions). The case-2
# row is missing from the seed text; the project's notes give "≈0.038"
# without a std (docs/xnorpp.md#fidelity-experiment).
PAPER_TABLE2 = {
    "direct_sign": (6.36, 0.04),
    "xnor": (0.095, 0.002),
    "xnorpp_1": (0.038, 0.001),
    "xnorpp_2": (0.038, None),
    "xnorpp_3": (0.037, 0.001),
    "xnorpp_4": (0.035, 0.001),
}
RESULTS_NAME = "xnorpp_fidelity"
# Sign/sign conv without any scale: "direct binarization".
DIRECT_SIGN_SPEC = QuantSpec(input_quantizer="ste_sign", kernel_quantizer="ste_sign")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
  """Settings of one benchmark run (every field is a command-line flag).

  Attributes:
    reps: independent ``(W, I)`` pairs.
    steps: Adam steps per Γ case and repetition.
    lr: peak Adam learning rate, relative to each Γ tensor's initial RMS.
    loss: ``"l1"`` or ``"l2"``, the distance Γ is fitted with.
    w_std: standard deviation of ``W``.
    i_std: standard deviation of ``I``.
    filters: ``o``, output channels (64 in the paper).
    channels: ``c``, input channels (64).
    size: spatial size of the square input (16).
    kernel: side of the square kernel (3).
    batch_size: repetitions vmapped together (``lax.map(..., batch_size=)``).
    seed: PRNG seed.
  """

  reps: int = 100
  steps: int = 3000
  lr: float = 1e-2
  loss: str = "l1"
  w_std: float = 0.082
  i_std: float = 0.082
  filters: int = 64
  channels: int = 64
  size: int = 16
  kernel: int = 3
  batch_size: int = 4
  seed: int = 0

  def __post_init__(self):
    if self.loss not in ("l1", "l2"):
      raise ValueError(f"Config.loss={self.loss!r}; allowed values are 'l1', 'l2'.")
    for name in ("reps", "steps", "filters", "channels", "size", "kernel", "batch_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"Config.{name}={getattr(self, name)!r}; must be >= 1.")
    for name in ("lr", "w_std", "i_std"):
      if not getattr(self, name) > 0:
        raise ValueError(f"Config.{name}={getattr(self, name)!r}; must be > 0.")


# ----------------------------------------------------------------------------- problem
def sample_problem(key: jax.Array, cfg: Config):
  """One repetition's data: ``W ~ N(0, w_std²)`` ``(k, k, c, o)``, and two inputs
  ``I, I' ~ N(0, i_std²)`` of shape ``(1, size, size, c)`` (``I'`` is the fresh one)."""
  kw, ki, kf = jax.random.split(key, 3)
  k, c, o, n = cfg.kernel, cfg.channels, cfg.filters, cfg.size
  w = cfg.w_std * jax.random.normal(kw, (k, k, c, o))
  x = cfg.i_std * jax.random.normal(ki, (1, n, n, c))
  x_fresh = cfg.i_std * jax.random.normal(kf, (1, n, n, c))
  return w, x, x_fresh


def make_conv(kernel: jax.Array, spec: QuantSpec, cfg: Config) -> QuantConv:
  """A ``QuantConv`` (SAME, stride 1, no bias) whose latent kernel is ``kernel``."""
  return QuantConv(cfg.channels, cfg.filters, cfg.kernel, padding="SAME",
                   spec=spec, input_size=(cfg.size, cfg.size),
                   kernel_init=lambda key, shape, dtype: kernel.astype(dtype),
                   rngs=nnx.Rngs(0))


def l1_distance(y: jax.Array, y_hat: jax.Array) -> jax.Array:
  """The paper's metric: ``mean |y − y_hat|`` over all output elements."""
  return jnp.mean(jnp.abs(y - y_hat))


def fit_loss(y: jax.Array, y_hat: jax.Array, loss: str) -> jax.Array:
  """The training loss: ``mean |y − y_hat|`` (``"l1"``) or ``mean (y − y_hat)²`` (``"l2"``)."""
  if loss == "l1":
    return l1_distance(y, y_hat)
  return jnp.mean(jnp.square(y - y_hat))


# ---------------------------------------------------------------------------- training
def relative_adam(gamma0, *, lr: float, steps: int) -> optax.GradientTransformation:
  """Adam with a cosine-decayed learning rate, in units of each tensor's initial RMS.

  The update of a Γ tensor ``p`` is ``−lr_t · rms(p_0) · m̂/(sqrt(v̂)+ε)``, i.e. plain
  Adam on ``p / rms(p_0)``, with ``lr_t`` a cosine decay from ``lr`` to 0 over
  ``steps``.
  """
  ref = jax.tree.map(lambda p: jnp.sqrt(jnp.mean(jnp.square(p))), gamma0)
  return optax.chain(
      optax.scale_by_adam(),
      optax.stateless(lambda updates, params: jax.tree.map(jnp.multiply, updates, ref)),
      optax.scale_by_learning_rate(optax.cosine_decay_schedule(lr, steps)),
  )


def fit_gamma(layer: QuantConv, x: jax.Array, y: jax.Array, cfg: Config):
  """Learns the layer's Γ (its ``ScaleFactor`` parameters only) so that ``layer(x) ≈ y``.

  Runs ``cfg.steps`` steps of :func:`relative_adam` on ``fit_loss(y, layer(x))`` in one
  ``lax.scan``; the latent kernel (hence ``sign(W)``) is not touched.

  Returns:
    ``(trained_layer, losses)``, ``losses[t]`` the loss before step ``t``
    (shape ``(steps,)``).
  """
  graphdef, gamma, rest = nnx.split(layer, ScaleFactor, ...)
  tx = relative_adam(gamma, lr=cfg.lr, steps=cfg.steps)

  def loss_fn(g):
    return fit_loss(y, nnx.merge(graphdef, g, rest)(x), cfg.loss)

  def step(carry, _):
    g, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(g)
    updates, opt_state = tx.update(grads, opt_state, g)
    return (optax.apply_updates(g, updates), opt_state), loss

  (gamma, _), losses = jax.lax.scan(step, (gamma, tx.init(gamma)), None,
                                    length=cfg.steps)
  return nnx.merge(graphdef, gamma, rest), losses


def run_repetition(key: jax.Array, cfg: Config) -> dict[str, jax.Array]:
  """All methods on one random ``(W, I)`` pair.

  Returns:
    ``{"fit/<method>": L1 on I, "fresh/<method>": L1 on I', "loss/xnorpp_<c>": (steps,)
    training losses}`` (scalars except the losses).
  """
  w, x, x_fresh = sample_problem(key, cfg)
  real = make_conv(w, method_spec("fp"), cfg)
  y, y_fresh = real(x), real(x_fresh)
  out = {}
  baselines = {"direct_sign": make_conv(w, DIRECT_SIGN_SPEC, cfg),
               "xnor": make_conv(w, method_spec("xnor"), cfg)}
  for name, layer in baselines.items():
    out[f"fit/{name}"] = l1_distance(y, layer(x))
    out[f"fresh/{name}"] = l1_distance(y_fresh, layer(x_fresh))
  for case in CASES:
    name = f"xnorpp_{case}"
    layer, losses = fit_gamma(make_conv(w, method_spec(name), cfg), x, y, cfg)
    out[f"fit/{name}"] = l1_distance(y, layer(x))
    out[f"fresh/{name}"] = l1_distance(y_fresh, layer(x_fresh))
    out[f"loss/{name}"] = losses
  return out


@functools.partial(jax.jit, static_argnames="cfg")
def run_all(keys: jax.Array, cfg: Config) -> dict[str, jax.Array]:
  """:func:`run_repetition` over ``keys`` (leading axis ``reps``), vmapped in batches."""
  return jax.lax.map(functools.partial(run_repetition, cfg=cfg), keys,
                     batch_size=min(cfg.batch_size, cfg.reps))


# ----------------------------------------------------------------------------- summary
def _checkpoints(steps: int) -> list[int]:
  """About a dozen roughly log-spaced step indices from 0 to ``steps − 1``."""
  pts = np.unique(np.geomspace(1, steps, num=12).astype(int) - 1)
  return [int(p) for p in pts]


def summarise(raw: dict[str, np.ndarray], cfg: Config) -> dict:
  """Mean ± std over repetitions per method, and the mean loss curves.

  ``convergence[m]["rel_change_last_10pct"]`` is
  ``(loss[0.9·steps] − loss[-1]) / loss[-1]`` of the mean curve: close to 0 once the
  loss has flattened.
  """
  table = {}
  for m in METHODS:
    fit, fresh = raw[f"fit/{m}"], raw[f"fresh/{m}"]
    paper_mean, paper_std = PAPER_TABLE2[m]
    table[m] = {
        "label": LABELS[m],
        "mean": float(fit.mean()), "std": float(fit.std()),
        "fresh_mean": float(fresh.mean()), "fresh_std": float(fresh.std()),
        "paper_mean": paper_mean, "paper_std": paper_std,
        "per_rep": [float(v) for v in fit],
    }
  checkpoints = _checkpoints(cfg.steps)
  convergence = {}
  for c in CASES:
    m = f"xnorpp_{c}"
    curve = raw[f"loss/{m}"].mean(axis=0)
    final = float(curve[-1])
    ref = float(curve[int(0.9 * (cfg.steps - 1))])
    convergence[m] = {
        "loss_at_step": {str(s): float(curve[s]) for s in checkpoints},
        "final_loss": final,
        "rel_change_last_10pct": (ref - final) / final if final > 0 else 0.0,
    }
  return {"table": table, "convergence": convergence}


def _pm(mean, std, digits=4):
  if mean is None:
    return "–"
  return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_markdown(results: dict) -> str:
  """The results as a markdown page: the table beside the paper's, settings, losses."""
  cfg = results["config"]
  lines = [
      "# XNOR-Net++ Table 2: fidelity of binary conv approximations",
      "",
      f"Generated by `benchmarks/xnorpp_fidelity.py` on {results['date']}.",
      "",
      f"Command: `{results['command']}`",
      "",
      f"Mean L1 distance `mean |Y − Ŷ|` to the real conv output, mean ± std over "
      f"{cfg['reps']} random `(W, I)` pairs (paper: 100). `W`: "
      f"{cfg['kernel']}×{cfg['kernel']}×{cfg['channels']}×{cfg['filters']}, "
      f"std {cfg['w_std']}; `I`: {cfg['size']}×{cfg['size']}×{cfg['channels']}, "
      f"std {cfg['i_std']}; SAME, stride 1. Γ learned with Adam, {cfg['steps']} steps, "
      f"{cfg['loss'].upper()} loss, relative lr {cfg['lr']} (cosine decay).",
      "",
      "| Method | Paper | Ours (fit input, paper's protocol) | Ours (fresh input) "
      "| Paper ÷ XNOR | Ours ÷ XNOR (fit) |",
      "|---|---|---|---|---|---|",
  ]
  xnor = results["table"]["xnor"]
  for m in METHODS:
    row = results["table"][m]
    digits = 2 if m == "direct_sign" else 4
    paper = _pm(row["paper_mean"], row["paper_std"], 3 if m != "direct_sign" else 2)
    if m == "xnorpp_2":
      paper = "≈" + paper
    lines.append(
        f"| {row['label']} | {paper} | {_pm(row['mean'], row['std'], digits)} "
        f"| {_pm(row['fresh_mean'], row['fresh_std'], digits)} "
        f"| {row['paper_mean'] / xnor['paper_mean']:.3g} "
        f"| {row['mean'] / xnor['mean']:.3g} |")
  lines += [
      "",
      "The paper's direct-sign 6.36 cannot be reached at any scale of `W` and `I` "
      "for this geometry (≥ ≈14.2); the scale here is calibrated so that XNOR-Net's "
      "error is ≈0.095 (see the module docstring). The fresh-input column applies the "
      "Γ learned on `I` to a new input `I'` with the same `W`.",
      "",
      "## Convergence (training loss, mean over repetitions)",
      "",
  ]
  conv = results["convergence"]
  steps = list(next(iter(conv.values()))["loss_at_step"])
  lines.append("| step | " + " | ".join(f"case {c}" for c in CASES) + " |")
  lines.append("|---" * (len(CASES) + 1) + "|")
  for s in steps:
    lines.append(f"| {s} | " + " | ".join(
        f"{conv[f'xnorpp_{c}']['loss_at_step'][s]:.3e}" for c in CASES) + " |")
  lines.append("| rel. change, last 10 % | " + " | ".join(
      f"{conv[f'xnorpp_{c}']['rel_change_last_10pct']:.1e}" for c in CASES) + " |")
  lines += [
      "",
      f"Wall time: {results['wall_time_s']:.1f} s (compile {results['compile_time_s']:.1f} s, "
      f"run {results['run_time_s']:.1f} s) "
      f"on {results['device']}, jax {results['jax_version']}.",
      "",
  ]
  return "\n".join(lines)


def write_results(results: dict, out_dir: str) -> tuple[str, str]:
  """Writes ``xnorpp_fidelity.md`` and ``.json`` to ``out_dir``; returns their paths."""
  return cli.write_results(results, os.path.join(out_dir, RESULTS_NAME), format_markdown)


def run_benchmark(cfg: Config, command: str = "") -> dict:
  """Runs every repetition and returns the summary with settings and timings."""
  keys = jax.random.split(jax.random.key(cfg.seed), cfg.reps)
  t0 = time.perf_counter()
  compiled = run_all.lower(keys, cfg).compile()
  t1 = time.perf_counter()
  raw = jax.device_get(compiled(keys))
  t2 = time.perf_counter()
  results = summarise({k: np.asarray(v) for k, v in raw.items()}, cfg)
  dev = jax.devices()[0]
  return {
      "benchmark": RESULTS_NAME,
      "paper": "XNOR-Net++ (Bulat & Tzimiropoulos), §4.2, Table 2",
      "command": command,
      "config": dataclasses.asdict(cfg),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "wall_time_s": t2 - t0,
      "compile_time_s": t1 - t0,
      "run_time_s": t2 - t1,
      "device": f"{dev.platform} ({dev.device_kind}, {os.cpu_count()} CPUs, "
                f"{cli.cpu_description()})",
      "jax_version": jax.__version__,
      **results,
  }


# --------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> tuple[Config, str]:
  """Parses ``--field=value`` flags for every :class:`Config` field and ``--out``."""
  return cli.parse_args(Config, argv, description=__doc__.split("\n")[0],
                        out_help="directory for xnorpp_fidelity.{md,json}")


def main(argv: Sequence[str] | None = None) -> dict:
  """CLI entry point: runs the benchmark, prints the table and writes the results."""
  return cli.main("benchmarks.xnorpp_fidelity", argv, parse=parse_args,
                  run_benchmark=run_benchmark, write=write_results,
                  format_markdown=format_markdown)


if __name__ == "__main__":
  from bnnjax import host_memory
  host_memory.use_huge_pages()  # before JAX starts: see bnnjax/host_memory.py
  main()
