"""The training loss hook: extra loss terms added to cross-entropy, each logged.

The trainer minimises ``CE + Σ_t weight_t · value_t`` where each term ``t`` is a
:class:`LossTerm`. A term's ``fn(model, batch, outputs)`` sees the merged NNX model
(so it can select variables by type, e.g. ``nnx.state(model, LatentWeight)``), the
batch, and ``outputs = {"logits", "features", "step"}``; it returns a scalar (the
trainer logs the unweighted value under ``loss/<name>``). A term may update non-``Param``
variables of the model in place (e.g. BONN's class centres): those updates are kept
after the step and no gradient flows through them.

Terms are built from ``config.loss_terms``, a mapping ``name -> {"weight": w, ...}``,
through the :data:`LOSS_TERMS` registry; new terms register a builder there. A builder
``(model, config, ctx, **kwargs)`` runs before the model is split for training, so it
may attach variables the term needs (BONN's feature prior) to the model.

BONN (SPEC §5) is two terms: ``bayesian_kernel`` (weight ``λ/2``) and
``bayesian_feature`` (weight ``θ/2``), giving the paper's Eq. 10
``CE + (λ/2)·Σ_layers L_K + (θ/2)·mean L_F``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

LossFn = Callable[[nnx.Module, Mapping[str, jax.Array], Mapping[str, jax.Array]],
                  jax.Array]


@dataclasses.dataclass(frozen=True)
class LossContext:
  """What builders may need to know about the run."""
  input_shape: tuple[int, int, int]
  num_classes: int
  steps_per_epoch: int


@dataclasses.dataclass(frozen=True)
class LossTerm:
  """One extra loss term: ``weight · fn(model, batch, outputs)``."""
  name: str
  weight: float
  fn: LossFn


def l2_term(*, weight: float, variable_type: str = "Param") -> LossTerm:
  """``Σ ||θ||²`` over kernels (rank ≥ 2) of the given ``nnx.Variable`` type.

  ``variable_type="LatentWeight"`` restricts it to the latent weights of binary
  layers. (Decoupled weight decay is ``config.weight_decay``; this is the explicit
  penalty, logged like any other term.)
  """
  from bnnjax import nn  # local: the nn package imports nothing from train
  types = {"Param": nnx.Param, "LatentWeight": nn.LatentWeight,
           "ScaleFactor": nn.ScaleFactor}
  if variable_type not in types:
    raise ValueError(
        f"loss_terms.l2.variable_type={variable_type!r}; allowed values are "
        f"{sorted(types)}.")

  def fn(model, batch, outputs):
    leaves = jax.tree.leaves(nnx.state(model, types[variable_type]))
    return sum((jnp.sum(x ** 2) for x in leaves if x.ndim >= 2), jnp.zeros(()))
  return LossTerm("l2", weight, fn)


def bonn_layers(model) -> list:
  """The layers of ``model`` whose spec is BONN's (``weight_scale="bonn"``)."""
  return [m for _, m in nnx.iter_modules(model)
          if getattr(getattr(m, "spec", None), "weight_scale", None) == "bonn"]


def bayesian_kernel_term(model, *, weight: float, nu: float = 1e-4) -> LossTerm:
  """``Σ_layers L_K`` over the model's BONN layers (:func:`bayesian_kernel_loss`)."""
  from bnnjax.losses import bayesian_kernel_loss
  if not bonn_layers(model):
    raise ValueError(
        "config.loss_terms.bayesian_kernel needs BONN layers: set config.method='bonn'.")

  def fn(model, batch, outputs):
    return sum((bayesian_kernel_loss(l.kernel[...], l.bonn_modulation[...],
                                     l.bonn_mu[...], l.bonn_log_sigma[...], nu=nu)
                for l in bonn_layers(model)), jnp.zeros(()))
  return LossTerm("bayesian_kernel", weight, fn)


def bayesian_feature_term(model, ctx: LossContext, *, weight: float,
                          center_rate: float = 0.5, start_epoch: float = 0.0) -> LossTerm:
  """``mean_m L_F`` on the features entering the classifier, with class centres
  updated by the center-loss rule every training step (outside the gradient).

  Attaches a :class:`bnnjax.nn.FeaturePrior` to the model as ``bonn_feature_prior``.
  ``start_epoch > 0`` switches the term on only from that epoch (BONN uses the feature
  loss only while fine-tuning WRN); before it the term's value is 0, centres still
  follow the features.
  """
  from bnnjax import nn
  from bnnjax.losses import bayesian_feature_loss, update_centers
  x = jnp.zeros((1, *ctx.input_shape), jnp.float32)
  _, feats = nnx.eval_shape(lambda m: m(x, return_features=True), model)
  model.bonn_feature_prior = nn.FeaturePrior(ctx.num_classes, feats.shape[-1])
  start_step = int(round(start_epoch * ctx.steps_per_epoch))

  def fn(model, batch, outputs):
    prior = model.bonn_feature_prior
    value = jnp.mean(bayesian_feature_loss(outputs["features"], batch["label"],
                                           prior.centers[...], prior.log_sigma[...]))
    prior.centers[...] = update_centers(prior.centers[...], outputs["features"],
                                        batch["label"], center_rate)
    return jnp.where(outputs["step"] >= start_step, value, 0.0)
  return LossTerm("bayesian_feature", weight, fn)


# name -> builder(model, config, ctx, **term_config) -> LossTerm
LOSS_TERMS: dict[str, Callable[..., LossTerm]] = {
    "l2": lambda model, config, ctx, **kw: l2_term(**kw),
    "bayesian_kernel": lambda model, config, ctx, **kw: bayesian_kernel_term(model, **kw),
    "bayesian_feature": lambda model, config, ctx, **kw: bayesian_feature_term(
        model, ctx, **kw),
}


def build_loss_terms(model, config, ctx: LossContext) -> list[LossTerm]:
  """The terms named in ``config.loss_terms`` (a mapping ``name -> kwargs``)."""
  spec: Mapping[str, Any] = config.get("loss_terms", None) or {}
  if hasattr(spec, "to_dict"):  # resolves FieldReferences such as weight = λ/2
    spec = spec.to_dict()
  terms = []
  for name, kwargs in dict(spec).items():
    if name not in LOSS_TERMS:
      raise ValueError(
          f"config.loss_terms has unknown term {name!r}; allowed values are "
          f"{sorted(LOSS_TERMS)}.")
    kwargs = dict(kwargs or {})
    if "weight" not in kwargs:
      raise ValueError(f"config.loss_terms.{name} needs a 'weight'.")
    try:
      terms.append(LOSS_TERMS[name](model, config, ctx, **kwargs))
    except TypeError as e:
      raise ValueError(f"config.loss_terms.{name}: {e}") from e
  return terms
