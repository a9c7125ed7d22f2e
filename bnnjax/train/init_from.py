"""Fine-tuning: a new run starts from another run's trained weights (``config.init_from``).

``config.init_from`` names the workdir of a finished (or stopped) run and
``config.init_from_step`` one of its checkpoints (default: the latest). At step 0 of
the new run, before its first train step:

* every parameter and every non-parameter variable (batch statistics, BONN's class
  centres) whose path and shape match an array of the source checkpoint takes that
  array; RNG keys and their counters stay the new run's (its seed's streams);
* a variable a quantization method derives from the latent kernel
  (:meth:`bnnjax.methods.Method.init_params`: XNOR-Net++'s Γ factors, BONN's ``w``,
  ``μ``, ``log σ``) that the source does not hold is derived again from the *loaded*
  kernel, as a fresh layer derives it from its random one. So an ``xnor`` run
  fine-tunes into ``bonn`` or ``xnorpp`` with the method's own initialisation; the
  cross-filter factors are computed from the kernel in every forward pass, which is
  the paper's §4.4 result (Eq. 16) for fine-tuning a filter-wise model;
* an array whose shape differs (a classifier for another number of classes) keeps its
  fresh initialisation and is named in the report;
* the optimizer state starts fresh, and so do the step count and the schedules.

A resumed run restores its own checkpoint and never reads the source again, so a
fine-tuned run stays loadable (:func:`bnnjax.train.load_trained`) after its source
is deleted.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bnnjax import methods
from bnnjax.train import checkpoint as ckpt_lib
from bnnjax.train.parallel import is_prng_key
from bnnjax.train.validation import ConfigError
from bnnjax.tree_paths import path_name


@dataclasses.dataclass(frozen=True)
class Report:
  """What :func:`load` did: paths (``a/b/kernel``) loaded, derived again from a loaded
  kernel, and kept at their initialisation (with the reason)."""
  source: str
  step: int
  loaded: tuple[str, ...]
  derived: tuple[str, ...]
  kept: tuple[tuple[str, str], ...]

  def summary(self) -> str:
    """One paragraph for the log."""
    total = len(self.loaded) + len(self.derived) + len(self.kept)
    out = (f"Initialised from {self.source} (checkpoint of step {self.step}): "
           f"{len(self.loaded)} of {total} arrays loaded")
    if self.derived:
      out += f", {len(self.derived)} derived from the loaded kernels"
    if self.kept:
      shown = "; ".join(f"{name} ({why})" for name, why in self.kept[:6])
      more = f"; and {len(self.kept) - 6} more" if len(self.kept) > 6 else ""
      out += f", {len(self.kept)} kept their initialisation: {shown}{more}"
    return out + "."


def source_step(workdir: str, step: int | None) -> int:
  """The checkpoint step of ``workdir`` that ``config.init_from`` reads.

  Raises:
    ConfigError: ``workdir`` is not a trained run, or has no checkpoint ``step``.
  """
  if not os.path.isfile(os.path.join(workdir, "config.json")):
    raise ConfigError(
        f"config.init_from={workdir!r} is not a run's workdir (it has no config.json); "
        "allowed values are the --workdir of a run trained by experiments.run.")
  steps = ckpt_lib.saved_steps(workdir)
  if not steps:
    raise ConfigError(f"config.init_from={workdir!r} holds no checkpoint to start from.")
  if step is None:
    return steps[-1]
  if step not in steps:
    raise ConfigError(f"config.init_from_step={step!r}: {workdir} has checkpoints of "
                      f"steps {steps}; allowed values are those (or None for the latest).")
  return step


def _read(workdir: str, step: int) -> dict[str, dict]:
  """The nested ``params`` and ``rest`` trees of ``workdir``'s checkpoint ``step``."""
  if os.path.isdir(os.path.join(workdir, "checkpoints", str(step), ckpt_lib.LEGACY_ITEM)):
    raise ConfigError(
        f"config.init_from={workdir!r}: its checkpoint of step {step} has the earlier "
        "format of numbered arrays, which has no names to match layers by; resume that "
        "run once with the current bnnjax to rewrite it, or start without init_from.")
  return ckpt_lib.read_items(workdir, step, ("params", "rest"))


def _lookup(nested: dict, names: tuple[str, ...]):
  node = nested
  for n in names:
    if not isinstance(node, dict) or n not in node:
      return None
    node = node[n]
  return None if isinstance(node, dict) else np.asarray(node)


def _fill(tree, nested: dict, loaded: list, kept: list, prefix: str, skip: set):
  """``tree`` with each leaf replaced by the same-named, same-shaped array of
  ``nested``, except the names in ``skip``; records what it loaded and kept."""
  leaves, treedef = jax.tree.flatten(tree)
  out = []
  for (names, ref), leaf in zip(ckpt_lib._paths(tree), leaves):
    name = path_name(names)
    if name in skip or is_prng_key(ref):
      out.append(leaf)
      continue
    arr = _lookup(nested, names)
    if arr is None:
      kept.append((name, f"not in the source's {prefix}"))
      out.append(leaf)
    elif tuple(arr.shape) != tuple(ref.shape):
      kept.append((name, f"shape {tuple(arr.shape)} in the source, {tuple(ref.shape)} here"))
      out.append(leaf)
    else:
      loaded.append(name)
      out.append(jnp.asarray(arr, dtype=ref.dtype))
  return jax.tree.unflatten(treedef, out)


def load(graphdef, params, rest, workdir: str, step: int | None = None):
  """``(params, rest, report)``: the model state ``(graphdef, params, rest)`` with the
  arrays of ``workdir``'s checkpoint ``step`` loaded by name (module docstring).

  Raises:
    ConfigError: ``workdir`` is not a run with that checkpoint, or no array of the
      model is in it (a different model).
  """
  step = source_step(workdir, step)
  source = _read(workdir, step)
  loaded: list[str] = []
  kept: list[tuple[str, str]] = []
  # RNG keys and their counters stay the new run's (its seed's streams).
  rngs = {path_name(names) for names, _ in
          ckpt_lib._paths(nnx.state(nnx.merge(graphdef, params, rest), nnx.RngState))}
  params = _fill(params, source["params"], loaded, kept, "params", rngs)
  rest = _fill(rest, source["rest"], loaded, kept, "state", rngs)
  if not any(name.endswith("/kernel") for name in loaded):
    missing = next((f"{n}: {why}" for n, why in kept if n.endswith("/kernel")), "-")
    raise ConfigError(
        f"config.init_from={workdir!r}: none of this model's kernels is in its "
        f"checkpoint of step {step} (e.g. {missing}): it trained a different model; "
        "allowed values are runs of the same model_name and widths.")
  loaded_set = set(loaded)

  # Method variables the source lacks: derive them from the loaded kernel.
  model = nnx.merge(graphdef, params, rest)
  derived = []
  for path, module in nnx.iter_modules(model):
    spec = getattr(module, "spec", None)
    kernel_name = path_name((*path, "kernel"))
    if spec is None or kernel_name not in loaded_set or not hasattr(module, "out_hw"):
      continue
    fresh = methods.for_spec(spec).init_params(spec, module.kernel[...], module.out_hw)
    for attr, variable in fresh.items():
      name = path_name((*path, attr))
      if name in loaded_set:
        continue
      getattr(module, attr)[...] = variable[...]
      derived.append(name)
  derived_set = set(derived)
  kept = [(n, why) for n, why in kept if n not in derived_set]
  _, params, rest = nnx.split(model, nnx.Param, ...)
  report = Report(os.path.abspath(workdir), step, tuple(loaded), tuple(derived),
                  tuple(kept))
  return params, rest, report
