"""The training loss hook: extra loss terms added to cross-entropy, each logged.

The trainer minimises ``CE + Σ_t weight_t · value_t`` where each term ``t`` is a
:class:`LossTerm`. A term's ``fn(model, batch, outputs)`` sees the merged NNX model
(so it can select variables by type, e.g. ``nnx.state(model, LatentWeight)``), the
batch, and ``outputs = {"logits", "features"}``; it returns a scalar (the trainer
logs the unweighted value under ``loss/<name>``). A term may update non-``Param``
variables of the model in place (e.g. BONN's class centres): those updates are kept
after the step and no gradient flows through them.

Terms are built from ``config.loss_terms``, a mapping ``name -> {"weight": w, ...}``,
through the :data:`LOSS_TERMS` registry; new terms register a builder there.
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


# name -> builder(model, config, **term_config) -> LossTerm
LOSS_TERMS: dict[str, Callable[..., LossTerm]] = {
    "l2": lambda model, config, **kw: l2_term(**kw),
}


def build_loss_terms(model, config) -> list[LossTerm]:
  """The terms named in ``config.loss_terms`` (a mapping ``name -> kwargs``)."""
  spec: Mapping[str, Any] = config.get("loss_terms", None) or {}
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
      terms.append(LOSS_TERMS[name](model, config, **kwargs))
    except TypeError as e:
      raise ValueError(f"config.loss_terms.{name}: {e}") from e
  return terms
