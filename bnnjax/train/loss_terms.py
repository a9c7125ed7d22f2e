"""The training loss hook: extra loss terms added to cross-entropy, each logged.

The trainer minimises ``CE + Σ_t weight_t · value_t`` where each term ``t`` is a
:class:`LossTerm`. A term's ``fn(model, batch, outputs)`` sees the merged NNX model
(so it can select variables by type, e.g. ``nnx.state(model, LatentWeight)``), the
batch, and ``outputs = {"logits", "features", "step"}``; it returns a scalar (the
trainer logs the unweighted value under ``loss/<name>``). A term may update non-``Param``
variables of the model in place (e.g. BONN's class centres): those updates are kept
after the step and no gradient flows through them.

Coupled and decoupled terms. By default a term is *coupled*: its gradient is added to
the cross-entropy's before the optimizer, as in the papers' SGD. With
``{"decoupled": True}`` in its config entry a term is *decoupled*, as AdamW decouples
weight decay from Adam (Loshchilov & Hutter 2019): the optimizer sees only the coupled
loss's gradient ``g``, and the term's gradient ``g_t`` is applied after it at the
parameter's learning rate, ``Δθ = tx(g) − η_group(step) · weight_t · g_t``. Under SGD
without momentum the two are the same update; under Adam a coupled term whose gradient
outweighs the cross-entropy's is normalised into lr-sized steps on every weight, while
a decoupled one moves each weight by ``η · weight_t · g_t``, as SGD would
(docs/bonn.md#investigation). A decoupled term may read only the model's variables,
not the batch or the outputs (its gradient is taken without a forward pass), and it
cannot act on Bop's kernels, which have no learning rate.

Terms are built from ``config.loss_terms``, a mapping ``name -> {"weight": w, ...}``,
through the :data:`LOSS_TERMS` registry (new general terms register a builder there)
and the terms the quantization methods bring (:attr:`bnnjax.methods.Method.loss_terms`).
A builder runs before the model is split for training, so it may attach variables the
term needs (BONN's feature prior) to the model.

BONN (docs/bonn.md#total-loss-and-weights, :mod:`bnnjax.methods.bonn`) brings two
terms: ``bayesian_kernel`` (weight ``λ/2``) and ``bayesian_feature`` (weight ``θ/2``),
giving the paper's Eq. 10 ``CE + (λ/2)·Σ_layers L_K + (θ/2)·mean L_F``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from bnnjax import methods

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
  """One extra loss term: ``weight · fn(model, batch, outputs)``; ``decoupled``: its
  gradient bypasses the optimizer (module docstring)."""
  name: str
  weight: float
  fn: LossFn
  decoupled: bool = False


class ModelOnly(collections.abc.Mapping):
  """The ``batch`` and ``outputs`` a decoupled term sees: reading any key is an error
  naming the term (a decoupled term's gradient is taken without a forward pass)."""

  def __init__(self, term: str, what: str):
    self._term, self._what = term, what

  def __getitem__(self, key):
    raise ValueError(
        f"config.loss_terms.{self._term}.decoupled=True, but the term reads "
        f"{self._what}[{key!r}]: a decoupled term may depend only on the model's "
        "variables; allowed values for decoupled are False for this term.")

  def __iter__(self):
    return iter(())

  def __len__(self):
    return 0


def decoupled_loss(terms, model) -> tuple[jax.Array, dict[str, jax.Array]]:
  """``(Σ weight_t · fn_t(model), {name_t: fn_t(model)})`` over the decoupled
  ``terms`` (``(0, {})`` when none): the sum to differentiate and the values to log."""
  values = {t.name: t.fn(model, ModelOnly(t.name, "batch"), ModelOnly(t.name, "outputs"))
            for t in terms if t.decoupled}
  total = sum((t.weight * values[t.name] for t in terms if t.decoupled), jnp.zeros(()))
  return total, values


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


def method_term(name: str, model, ctx: LossContext, *, weight: float,
                **kwargs) -> LossTerm:
  """The loss term ``name`` of a quantization method (e.g. BONN's
  ``bayesian_kernel``), built by the method's builder with ``kwargs``."""
  return LossTerm(name, weight, methods.loss_terms()[name](model, ctx, **kwargs))


# name -> builder(model, config, ctx, **term_config) -> LossTerm
LOSS_TERMS: dict[str, Callable[..., LossTerm]] = {
    "l2": lambda model, config, ctx, **kw: l2_term(**kw),
}


def _method_builder(name: str) -> Callable[..., LossTerm]:
  def build(model, config, ctx, **kwargs):
    return method_term(name, model, ctx, **kwargs)
  return build


def _builders() -> dict[str, Callable[..., LossTerm]]:
  """:data:`LOSS_TERMS` and the registered methods' terms."""
  out = {name: _method_builder(name) for name in methods.loss_terms()}
  out.update(LOSS_TERMS)
  return out


def build_loss_terms(model, config, ctx: LossContext) -> list[LossTerm]:
  """The terms named in ``config.loss_terms`` (a mapping ``name -> kwargs``)."""
  spec: Mapping[str, Any] = config.get("loss_terms", None) or {}
  if hasattr(spec, "to_dict"):  # resolves FieldReferences such as weight = λ/2
    spec = spec.to_dict()
  builders = _builders()
  terms = []
  for name, kwargs in dict(spec).items():
    if name not in builders:
      raise ValueError(
          f"config.loss_terms has unknown term {name!r}; allowed values are "
          f"{sorted(builders)}.")
    kwargs = dict(kwargs or {})
    if "weight" not in kwargs:
      raise ValueError(f"config.loss_terms.{name} needs a 'weight'.")
    decoupled = kwargs.pop("decoupled", False)
    if not isinstance(decoupled, bool):
      raise ValueError(f"config.loss_terms.{name}.decoupled={decoupled!r}; allowed "
                       "values are True and False.")
    try:
      term = builders[name](model, config, ctx, **kwargs)
    except TypeError as e:
      raise ValueError(f"config.loss_terms.{name}: {e}") from e
    terms.append(dataclasses.replace(term, decoupled=decoupled))
  return terms
