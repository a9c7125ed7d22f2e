"""Optimizers and learning-rate schedules from a config (optax).

Config fields read here (all on the top-level ``ConfigDict``):

- ``optimizer``: ``"sgd"`` (momentum ``momentum``, ``nesterov``), ``"adam"``, ``"adamw"``.
- ``lr``: base learning rate; ``group_lr``: ``{VariableClassName: lr}`` for parameter
  groups selected by their ``nnx.Variable`` type (e.g. ``{"ScaleFactor": 0.01}``),
  built with ``optax.multi_transform``; each group gets the same schedule shape.
- ``schedule``: ``"constant"``, ``"cosine"`` (to 0 over training), ``"step"``
  (× ``decay_factor`` at each epoch of ``decay_epochs`` if given, else every
  ``decay_every_epochs``); ``warmup_epochs`` linear warm-up.
- ``weight_decay``: decoupled (AdamW-style for ``adamw``; added to the gradient,
  i.e. L2, for ``sgd``/``adam``), on kernels only (:func:`decays`): plain
  ``nnx.Param`` and ``LatentWeight`` of rank ≥ 2, not BN, biases, XNOR-Net++'s Γ
  (``ScaleFactor``), BONN's modulation ``w`` (``Modulation``) or priors
  (``PriorParam``), whatever their rank.
- ``grad_clip_norm``: global-norm gradient clipping (``None`` for none).
- ``kernel_optimizer``: what trains the binary kernels (``LatentWeight``):
  ``"latent"`` (the optimizer above, on float latent weights) or ``"bop"``
  (:func:`bnnjax.train.bop.bop`, docs/bop.md) with ``bop_gamma`` (``γ``),
  ``bop_threshold`` (``τ``) and ``bop_gamma_schedule`` (``None``: ``γ`` follows the
  learning rate's schedule shape, as a ``group_lr`` group does; or one of
  :data:`SCHEDULES` with the same decay fields). Under Bop the kernels form a group of
  their own, ``"bop"``: no weight decay, learning rate or ``grad_clip_norm`` reaches
  them (the clipping norm is taken over the other gradients), and every other
  parameter keeps its optimizer and group.
"""

from __future__ import annotations

import optax
from flax import nnx
import jax

from bnnjax.nn import layers
from bnnjax.train import bop as bop_lib

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
KERNEL_OPTIMIZERS = ("latent", "bop")
BOP_GROUP = "bop"
# Kernel quantizers whose backward passes the gradient unchanged at |w| = 1, where
# Bop's ±1 kernels sit (Larq's Bop takes dL/dw of the binary weight itself):
# identity_sign always, ste_sign for clip >= 1 (its boundary is inclusive).
BOP_KERNEL_QUANTIZERS = (None, "ste_sign", "identity_sign")


def validate(config) -> None:
  """Fails early, naming the field, for optimizer settings that cannot work."""
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(
        f"config.optimizer={config.optimizer!r}; allowed values are {list(OPTIMIZERS)}.")
  if config.schedule not in SCHEDULES:
    raise ValueError(
        f"config.schedule={config.schedule!r}; allowed values are {list(SCHEDULES)}.")
  if not config.lr > 0:
    raise ValueError(f"config.lr={config.lr!r} must be > 0.")
  if (config.schedule == "step" and not config.get("decay_epochs", None)
      and not config.decay_every_epochs > 0):
    raise ValueError(
        f"config.decay_every_epochs={config.decay_every_epochs!r} must be > 0 for the "
        "step schedule.")
  kernel_optimizer = config.get("kernel_optimizer", "latent")
  if kernel_optimizer not in KERNEL_OPTIMIZERS:
    raise ValueError(f"config.kernel_optimizer={kernel_optimizer!r}; allowed values are "
                     f"{list(KERNEL_OPTIMIZERS)}.")
  if kernel_optimizer == "bop":
    validate_bop(config)


def uses_bop(config) -> bool:
  """Whether ``config`` trains its binary kernels with Bop."""
  return config.get("kernel_optimizer", "latent") == "bop"


def validate_bop(config) -> None:
  """The settings Bop cannot work with (docs/bop.md#what-bop-is-combined-with), each
  named: latent clipping (``clip_latent``: Bop's kernels are ±1, nothing to clip), a
  kernel quantizer other than :data:`BOP_KERNEL_QUANTIZERS` or ``ste_sign`` with
  ``kernel_quantizer_kwargs.clip < 1`` (Bop needs ``dL/dw`` at ``|w| = 1``, where
  ``approx_sign``'s gradient is 0 and ``swish_sign``'s −0.19), a learning rate for the
  kernels (``group_lr.LatentWeight``), and ``γ``/``τ`` out of range."""
  gamma = config.get("bop_gamma", bop_lib.DEFAULT_GAMMA)
  if not (isinstance(gamma, (int, float)) and not isinstance(gamma, bool)
          and 0 < gamma <= 1):
    raise ValueError(f"config.bop_gamma={gamma!r}; allowed values are numbers in (0, 1].")
  tau = config.get("bop_threshold", bop_lib.DEFAULT_THRESHOLD)
  if not (isinstance(tau, (int, float)) and not isinstance(tau, bool) and tau >= 0
          and tau != float("inf")):
    raise ValueError(f"config.bop_threshold={tau!r}; allowed values are finite numbers "
                     ">= 0.")
  gamma_schedule = config.get("bop_gamma_schedule", None)
  if gamma_schedule is not None and gamma_schedule not in SCHEDULES:
    raise ValueError(f"config.bop_gamma_schedule={gamma_schedule!r}; allowed values are "
                     f"None (the learning rate's schedule) or {list(SCHEDULES)}.")
  if config.get("clip_latent", None) is not None:
    raise ValueError(
        f"config.clip_latent={config.clip_latent!r} with config.kernel_optimizer='bop': "
        "Bop's kernels are ±1 and have no latent value to clip; set "
        "config.clip_latent=None.")
  quantizer = config.get("kernel_quantizer", None)
  if quantizer not in BOP_KERNEL_QUANTIZERS:
    raise ValueError(
        f"config.kernel_quantizer={quantizer!r} with config.kernel_optimizer='bop': its "
        "gradient at |w| = 1, where Bop's kernels are, is not the plain straight-through "
        f"one; allowed values are {list(BOP_KERNEL_QUANTIZERS)}.")
  kwargs = dict(config.get("kernel_quantizer_kwargs", None) or {})
  clip = kwargs.get("clip", 1.0)
  if quantizer in (None, "ste_sign") and not clip >= 1:
    raise ValueError(
        f"config.kernel_quantizer_kwargs.clip={clip!r} with config.kernel_optimizer="
        "'bop': ste_sign passes no gradient at |w| = 1 > clip, where Bop's kernels are; "
        "allowed values are clip >= 1.")
  group_lr = config.get("group_lr", None) or {}
  if layers.LatentWeight.__name__ in group_lr:
    raise ValueError(
        "config.group_lr.LatentWeight with config.kernel_optimizer='bop': Bop trains "
        "the kernels with config.bop_gamma, not a learning rate; remove the entry.")


def make_schedule(config, base_lr: float, steps_per_epoch: int,
                  total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step, for one parameter group."""
  warmup = int(round(config.get("warmup_epochs", 0.0) * steps_per_epoch))
  if config.schedule == "constant":
    main = optax.constant_schedule(base_lr)
  elif config.schedule == "cosine":
    main = optax.cosine_decay_schedule(base_lr, max(total_steps - warmup, 1))
  elif config.get("decay_epochs", None):
    main = optax.piecewise_constant_schedule(base_lr, {
        int(round(e * steps_per_epoch)) - warmup: config.decay_factor
        for e in config.decay_epochs})
  else:
    every = max(int(round(config.decay_every_epochs * steps_per_epoch)), 1)
    main = optax.exponential_decay(base_lr, transition_steps=every,
                                   decay_rate=config.decay_factor, staircase=True)
  if warmup <= 0:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, base_lr, warmup), main], [warmup])


def decays(var) -> bool:
  """Whether weight decay applies to a parameter: a kernel, i.e. a plain ``nnx.Param``
  or a binary layer's ``LatentWeight`` of rank ≥ 2. The learned scales and priors are
  ``nnx.Param`` subclasses of their own and are never decayed, although several have
  rank ≥ 2 (Γ case 2's α ``(h, w, o)``, case 3's β ``(h, w)``, BONN's conv ``w``
  ``(kh, kw)`` and the feature prior's ``log σ`` ``(C, D)``): decaying them pulls the
  scales toward 0 and the priors toward σ = 1, which no paper does."""
  return (type(var) in (nnx.Param, layers.LatentWeight)
          and getattr(var, "ndim", 0) >= 2)


def decay_mask(params):
  """``decays`` for each ``nnx.Variable`` of ``params`` (a prefix mask for optax)."""
  return jax.tree.map(decays, params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def _base_optimizer(config, schedule) -> optax.GradientTransformation:
  wd = config.get("weight_decay", 0.0) or 0.0
  mask = decay_mask
  if config.optimizer == "adamw":
    return optax.adamw(schedule, weight_decay=wd, mask=mask)
  parts = []
  if wd:
    parts.append(optax.add_decayed_weights(wd, mask=mask))
  if config.optimizer == "sgd":
    parts.append(optax.sgd(schedule, momentum=config.get("momentum", 0.9) or None,
                           nesterov=config.get("nesterov", False)))
  else:
    parts.append(optax.adam(schedule))
  return optax.chain(*parts)


def param_labels(params, group_lr, bop: bool = False) -> object:
  """Labels each parameter with its group: ``"bop"`` for a ``LatentWeight`` when
  ``bop``, else its Variable class name if that has a learning rate of its own in
  ``group_lr``, else ``"default"``."""
  def label(var):
    if bop and isinstance(var, layers.LatentWeight):
      return BOP_GROUP
    name = type(var).__name__
    return name if name in group_lr else "default"
  return jax.tree.map(label, params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def leaf_groups(config, params) -> list[str]:
  """The group of each parameter array of ``params``, in ``jax.tree.leaves`` order:
  the keys of :func:`make_optimizer`'s schedules (what a decoupled loss term's
  gradient is scaled by, docs of :mod:`bnnjax.train.loss_terms`)."""
  group_lr = dict(config.get("group_lr", None) or {})
  labels = param_labels(params, group_lr, bop=uses_bop(config))
  groups = jax.tree.leaves(labels)
  if len(groups) != len(jax.tree.leaves(params)):
    raise AssertionError("every parameter Variable holds one array")
  return groups


def bop_gamma_schedule(config, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
  """Bop's ``γ`` as a function of the step: ``config.bop_gamma`` shaped by
  ``config.bop_gamma_schedule``, or by the learning rate's ``config.schedule`` when
  that is ``None`` (warm-up and decay fields shared)."""
  name = config.get("bop_gamma_schedule", None)
  if name is not None and name != config.schedule:
    config = config.copy_and_resolve_references()
    config.schedule = name
  return make_schedule(config, config.get("bop_gamma", bop_lib.DEFAULT_GAMMA),
                       steps_per_epoch, total_steps)


def make_optimizer(config, params, steps_per_epoch: int, total_steps: int):
  """Builds the optax transformation and the per-group schedules.

  With ``config.kernel_optimizer = "bop"`` the ``LatentWeight`` leaves are the group
  ``"bop"``, trained by :func:`bnnjax.train.bop.bop` (``γ`` =
  :func:`bop_gamma_schedule`, ``τ`` = ``config.bop_threshold``), and the other groups
  are built as without it; ``optax.multi_transform`` routes each leaf to its group.

  Returns:
    ``(tx, schedules)`` where ``schedules`` maps group name (``"default"``, each
    ``group_lr`` key, and ``"bop"`` whose "rate" is ``γ``) to its schedule, for
    logging (as ``lr``, ``lr/<group>``).

  Raises:
    ValueError: a bad optimizer field, a ``group_lr`` type the model lacks, or Bop
      asked for a model without binary kernels; the message names the field.
  """
  validate(config)
  group_lr = dict(config.get("group_lr", None) or {})
  use_bop = uses_bop(config)
  labels = param_labels(params, group_lr, bop=use_bop)
  if use_bop and BOP_GROUP not in jax.tree.leaves(labels):
    raise ValueError(
        f"config.kernel_optimizer='bop' with config.method={config.get('method')!r}: "
        "the model has no binary kernels (LatentWeight) for Bop to train; allowed "
        "values for it are 'latent', or a method with binary kernels.")
  present = set(jax.tree.leaves(param_labels(params, group_lr)))
  unknown = set(group_lr) - present
  if unknown:
    kinds = sorted({type(v).__name__ for v in jax.tree.leaves(
        params, is_leaf=lambda x: isinstance(x, nnx.Variable))})
    raise ValueError(
        f"config.group_lr names {sorted(unknown)}, which this model has no parameters "
        f"of; its parameter types are {kinds}.")
  schedules = {"default": make_schedule(config, config.lr, steps_per_epoch, total_steps)}
  for name, lr in group_lr.items():
    schedules[name] = make_schedule(config, lr, steps_per_epoch, total_steps)
  transforms = {k: _base_optimizer(config, s) for k, s in schedules.items()}
  if use_bop:
    schedules[BOP_GROUP] = bop_gamma_schedule(config, steps_per_epoch, total_steps)
    transforms[BOP_GROUP] = bop_lib.bop(
        gamma=schedules[BOP_GROUP],
        threshold=config.get("bop_threshold", bop_lib.DEFAULT_THRESHOLD))
  if len(transforms) > 1:
    tx = optax.multi_transform(
        transforms, lambda p: param_labels(p, group_lr, bop=use_bop))
  else:
    tx = transforms["default"]
  if config.get("grad_clip_norm", None):
    clip = optax.clip_by_global_norm(config.grad_clip_norm)
    if use_bop:  # Bop's τ is a threshold on the raw gradient's average
      clip = optax.masked(clip, lambda p: jax.tree.map(
          lambda label: label != BOP_GROUP, param_labels(p, group_lr, bop=True)))
    tx = optax.chain(clip, tx)
  return tx, schedules
