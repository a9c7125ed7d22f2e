"""BONN: Bayesian optimized 1-bit CNNs (Gu et al. 2019; docs/bonn.md).

Per binarised layer with latent kernel ``k``, the layer owns

* the modulation ``w`` (:class:`Modulation`, ``bonn_modulation``): shape ``(kh, kw)``
  for a conv (broadcast over channels), ``(d_in,)`` for a dense layer, initialised to
  ``1/mean|k|`` [rec: the seed does not give its start; with it ``w ∘ k`` starts at the
  scale of ``sign(k)`` and ``1/mean(w) = mean|k|``, XNOR's layer-wide factor];
* per-filter ``μ_i = mean|k_i|`` and ``log σ_i = log std(k_i)`` (:class:`PriorParam`,
  ``bonn_mu``, ``bonn_log_sigma``), the two-mode Gaussian mixture prior at ``±μ_i``.

Forward [rec, from "elements of w replaced by their average in the forward pass"]:
the conv uses ``sign(k)`` and scales its output by the scalar ``1/mean(w)``.

Training adds two loss terms (Eq. 10: ``L = CE + L_K + L_F``):

* ``bayesian_kernel``: ``Σ_layers L_K`` (:func:`bnnjax.losses.bayesian_kernel_loss`,
  Eq. 7/9), weight ``λ/2``;
* ``bayesian_feature``: ``mean_m L_F`` on the features entering the classifier
  (:func:`bnnjax.losses.bayesian_feature_loss`, Eq. 8), weight ``θ/2``, with class
  centres (:class:`ClassCenter`) updated by the center-loss rule outside the gradient
  and per-class ``log σ`` (:class:`PriorParam`) in a :class:`FeaturePrior`.

``w`` has its own learning rate (``config.group_lr.Modulation``); ``w``, ``μ``,
``σ`` and the feature prior are needed for training only. Speed-up: XNOR-Net's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from bnnjax.losses import bayesian
from bnnjax.methods import registry
from bnnjax.methods.base import Method

NAME = "bonn"


class Modulation(nnx.Param):
  """BONN's learnable modulation ``w`` of a binarized layer (its own learning rate)."""


class PriorParam(nnx.Param):
  """BONN's prior parameters: per-filter ``μ``/``log σ`` of a binarized layer's kernel
  mixture, and the class-wise ``log σ`` of the feature prior."""


class ClassCenter(nnx.Variable):
  """Class centres of BONN's feature prior: updated by the center-loss rule, not by
  gradient (so not an ``nnx.Param``)."""


class FeaturePrior(nnx.Module):
  """BONN's feature prior (docs/bonn.md#bayesian-feature-loss): centres ``c`` (zeros)
  and ``log σ`` (zeros, σ = 1), both ``(num_classes, dim)``."""

  def __init__(self, num_classes: int, dim: int, dtype=jnp.float32):
    self.centers = ClassCenter(jnp.zeros((num_classes, dim), dtype))
    self.log_sigma = PriorParam(jnp.zeros((num_classes, dim), dtype))


def init_bonn(kernel: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(w, μ, log σ)`` of a layer: ``μ_i = mean|k_i|``, ``log σ_i = log std(k_i)`` and
  ``w = 1/mean|k|`` over the layer (module docstring;
  docs/bonn.md#layer-parameters-and-initialisation)."""
  axes = tuple(range(kernel.ndim - 1))
  mu = jnp.mean(jnp.abs(kernel), axis=axes)
  log_sigma = jnp.log(jnp.maximum(jnp.std(kernel, axis=axes), 1e-8))
  w_shape = kernel.shape[:2] if kernel.ndim == 4 else kernel.shape[:1]
  w = jnp.full(w_shape, 1.0 / jnp.maximum(jnp.mean(jnp.abs(kernel)), 1e-8), kernel.dtype)
  return w, mu, log_sigma


def layers(model: nnx.Module) -> list:
  """The layers of ``model`` whose spec is BONN's."""
  return [m for _, m in nnx.iter_modules(model)
          if getattr(m, "spec", None) is not None and METHOD.claims(m.spec)]


# How the kernel loss of a layer is normalised (``config.bonn_kernel_normalise``).
KERNEL_NORMALISATIONS = ("sum", "kernel_mean", "layer_mean")


def kernel_loss_count(kernel_shape, normalise: str) -> int:
  """``n_l``, what a layer's kernel loss is divided by under ``normalise`` (one of
  :data:`KERNEL_NORMALISATIONS`): 1 (``sum``), the elements of one filter
  ``kh·kw·c_in`` (``kernel_mean``) or of the whole kernel (``layer_mean``)."""
  size = math.prod(kernel_shape)
  return {"sum": 1, "kernel_mean": size // kernel_shape[-1], "layer_mean": size}[normalise]


def kernel_term(model: nnx.Module, ctx=None, *, nu: float = 1e-4, normalise: str = "sum"):
  """The ``bayesian_kernel`` loss term: ``fn(model, batch, outputs) = Σ_layers L_K^l / n_l``
  over the model's BONN layers (:func:`bnnjax.losses.bayesian_kernel_loss` with ``ν``).

  ``normalise`` sets ``n_l``: ``"sum"`` (the paper's Eq. 7, a sum over every weight:
  ``n_l = 1``), ``"kernel_mean"`` (a mean per filter: ``n_l = kh·kw·c_in``, the
  elements of one filter) or ``"layer_mean"`` (a mean over the layer's weights:
  ``n_l = kh·kw·c_in·c_out``). Each is the paper's loss with λ rescaled per layer; they
  differ in how hard the loss pulls on a weight of a wide layer against a narrow one
  (issue 14, docs/bonn.md#investigation).

  Raises:
    ValueError: the model has no BONN layer, or ``normalise`` is not one of
      :data:`KERNEL_NORMALISATIONS`.
  """
  del ctx
  if normalise not in KERNEL_NORMALISATIONS:
    raise ValueError(f"config.bonn_kernel_normalise={normalise!r}; allowed values are "
                     f"{list(KERNEL_NORMALISATIONS)}.")
  if not layers(model):
    raise ValueError(
        "config.loss_terms.bayesian_kernel needs BONN layers: set config.method='bonn'.")

  def fn(model, batch, outputs):
    return sum((bayesian.bayesian_kernel_loss(l.kernel[...], l.bonn_modulation[...],
                                              l.bonn_mu[...], l.bonn_log_sigma[...], nu=nu)
                / kernel_loss_count(l.kernel.shape, normalise) for l in layers(model)),
               jnp.zeros(()))
  return fn


def feature_term(model: nnx.Module, ctx, *, center_rate: float = 0.5,
                 start_epoch: float = 0.0):
  """The ``bayesian_feature`` loss term: ``fn(model, batch, outputs) = mean_m L_F`` on
  the features entering the classifier, with the class centres updated by the
  center-loss rule every training step (outside the gradient).

  Attaches a :class:`FeaturePrior` to the model as ``bonn_feature_prior`` (its size
  from ``ctx.num_classes`` and an abstract forward pass at ``ctx.input_shape``).
  ``start_epoch > 0`` switches the term on only from that epoch (BONN uses the feature
  loss only while fine-tuning WRN, with ``ctx.steps_per_epoch``); before it the term's
  value is 0, centres still follow the features.
  """
  x = jnp.zeros((1, *ctx.input_shape), jnp.float32)
  _, feats = nnx.eval_shape(lambda m: m(x, return_features=True), model)
  model.bonn_feature_prior = FeaturePrior(ctx.num_classes, feats.shape[-1])
  start_step = int(round(start_epoch * ctx.steps_per_epoch))

  def fn(model, batch, outputs):
    prior = model.bonn_feature_prior
    value = jnp.mean(bayesian.bayesian_feature_loss(
        outputs["features"], batch["label"], prior.centers[...], prior.log_sigma[...]))
    prior.centers[...] = bayesian.update_centers(prior.centers[...], outputs["features"],
                                                 batch["label"], center_rate)
    return jnp.where(outputs["step"] >= start_step, value, 0.0)
  return fn


class BONN(Method):
  """BONN's layer: ``sign(k)`` scaled by ``1/mean(w)``, with ``w``, ``μ``, ``log σ``."""

  names = (NAME,)
  weight_scale = "bonn"
  loss_terms = {"bayesian_kernel": kernel_term, "bayesian_feature": feature_term}
  training_only_variables = (Modulation, PriorParam, ClassCenter)

  def preset(self, name, number, *, input_quantizer, kernel_quantizer, pad_value):
    return dict(kernel_quantizer=kernel_quantizer, weight_scale=self.weight_scale,
                input_quantizer=input_quantizer, pad_value=pad_value)

  def init_params(self, spec, kernel, out_hw):
    """``bonn_modulation`` (:class:`Modulation`), ``bonn_mu`` and ``bonn_log_sigma``
    (:class:`PriorParam`) from :func:`init_bonn`."""
    w, mu, log_sigma = init_bonn(kernel)
    return {"bonn_modulation": Modulation(w), "bonn_mu": PriorParam(mu),
            "bonn_log_sigma": PriorParam(log_sigma)}

  def folded_scale(self, spec, layer):
    """The scalar ``1/mean(w)`` (docs/bonn.md#forward-pass [rec])."""
    return 1.0 / jnp.mean(layer.bonn_modulation[...])

  def stored_scales(self, spec, shape) -> int:
    """The folded ``1/mean(w)``: one float."""
    return 1

  def scale_mults(self, spec, shape) -> int:
    """One multiplication by the scalar per output, ``h·w·o``."""
    return shape.pixels * shape.o


METHOD = registry.register(BONN())
