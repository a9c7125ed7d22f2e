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
"""

from __future__ import annotations

import optax
from flax import nnx
import jax

from bnnjax.nn import layers

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


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


def param_labels(params, group_lr) -> object:
  """Labels each parameter with its group: its Variable class name if that has a
  learning rate of its own in ``group_lr``, else ``"default"``."""
  def label(var):
    name = type(var).__name__
    return name if name in group_lr else "default"
  return jax.tree.map(label, params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def make_optimizer(config, params, steps_per_epoch: int, total_steps: int):
  """Builds the optax transformation and the per-group schedules.

  Returns:
    ``(tx, schedules)`` where ``schedules`` maps group name (``"default"`` and each
    ``group_lr`` key) to its learning-rate schedule, for logging.
  """
  validate(config)
  group_lr = dict(config.get("group_lr", None) or {})
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
  if group_lr:
    tx = optax.multi_transform(
        {k: _base_optimizer(config, s) for k, s in schedules.items()},
        lambda p: param_labels(p, group_lr))
  else:
    tx = _base_optimizer(config, schedules["default"])
  if config.get("grad_clip_norm", None):
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx, schedules
