"""ReActNet's learnable thresholds (Liu et al., ECCV 2020, §3.2, Eq. 3-4; docs/reactnet.md).

ReActNet reshapes and shifts the activation distributions of a binary network with
two per-channel modules:

* **RSign** (Eq. 3): ``x_b = +1 if x_r > α_c else −1``, a sign with a learned
  per-channel threshold ``α_c``. It is written as a learned shift followed by the
  sign, ``x_b = sign(x_r + b_c)`` with ``b_c = −α_c`` (the official code's
  ``LearnableBias`` "move" before ``BinaryActivation``); with this framework's
  ``sign(0) = +1`` the value at ``x_r = α_c`` exactly is +1. :class:`LearnableBias`
  is the shift alone (in the models the binary layer applies the sign itself,
  ``QuantConv``'s input quantizer), :class:`RSign` the shift and the sign together.
* **RPReLU** (Eq. 4): a PReLU moved by a learned shift ``γ_i`` on its input and
  ``ζ_i`` on its output,
  ``f(x_i) = x_i − γ_i + ζ_i`` if ``x_i > γ_i``, else ``β_i·(x_i − γ_i) + ζ_i``
  (the official code's ``move1 → PReLU → move2``), :class:`RPReLU`.

Initialisation as in the official code: every shift 0, the PReLU slope ``β`` 0.25
(PyTorch's ``nn.PReLU``), so at initialisation RSign is the plain sign and RPReLU a
PReLU. The shifts are :class:`ThresholdShift` and the slopes :class:`PReLUSlope`,
``nnx.Param`` subclasses of their own, so optimizers select them by type
(``config.group_lr``) and weight decay never touches them
(:func:`bnnjax.train.optim.decays` decays kernels only; ReActNet's code decays conv
weights only too).

Every module acts on the last (channel) axis of NHWC or ``(N, D)`` input. Where the
models put them (``reactnet=True``; docs/reactnet.md#where-the-modules-sit): the
residual models in ReActNet's post-activation order ``RPReLU(BN(conv(sign(x + b))) +
shortcut(x))``, the plain CNNs ``BN → RPReLU → +b → sign``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from bnnjax.quant import registry


class ThresholdShift(nnx.Param):
  """A learned per-channel shift of ReActNet: RSign's ``b = −α`` and RPReLU's ``γ``, ``ζ``."""


class PReLUSlope(nnx.Param):
  """RPReLU's learned per-channel negative slope ``β``."""


def _check_features(num_features) -> int:
  if not isinstance(num_features, int) or num_features < 1:
    raise ValueError(f"num_features={num_features!r}; allowed values are integers >= 1.")
  return num_features


class LearnableBias(nnx.Module):
  """``y = x + b``, one learned shift per channel (``b`` initialised to 0).

  The shift of RSign (docs/reactnet.md#rsign): placed before a layer that binarises
  its input, that layer computes ``sign(x + b)``, i.e. ReActNet's
  ``x_b = +1 if x > α else −1`` with ``α = −b`` (Eq. 3). The straight-through
  gradient of the sign reaches ``b`` unchanged: ``∂L/∂b_c = Σ_{n,h,w} g·STE'(x + b)``
  (for ``ste_sign``, the gradient ``g`` where ``|x + b| <= 1``).

  Args:
    num_features: channels (the last axis of the input).
    param_dtype: dtype of ``b``.
  """

  def __init__(self, num_features: int, *, param_dtype=jnp.float32):
    n = _check_features(num_features)
    self.bias = ThresholdShift(jnp.zeros((n,), param_dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    return x + self.bias[...].astype(x.dtype)


class RSign(LearnableBias):
  """ReActNet's RSign (Eq. 3): ``x_b = sign(x + b)``, i.e. ``+1`` if ``x > α = −b``.

  ``sign(0) = +1`` (the framework's convention, so ``x = α`` gives +1, where the
  paper's strict ``>`` would give −1: a set of measure zero). The backward pass is the
  ``quantizer``'s straight-through estimator evaluated at ``x + b``, so
  ``∂x_b/∂x = ∂x_b/∂b = STE'(x + b)`` (``1{|x + b| <= clip}`` for ``ste_sign``;
  ReActNet's code uses Bi-Real's ``approx_sign``, ``2 − 2|x + b|`` on ``|x + b| < 1``).

  In the model zoo the binary layer signs its own input, so the models hold the
  :class:`LearnableBias` part only, before the layer; this module is the pair as one
  function, for use outside ``QuantConv``/``QuantDense``.

  Args:
    num_features: channels (the last axis of the input).
    quantizer: name of a ±1 sign quantizer (:func:`bnnjax.quant.sign_quantizers`:
      ``ste_sign``, ``approx_sign``, ``swish_sign``, ``identity_sign``).
    quantizer_kwargs: its hyper-parameters, e.g. ``{"clip": 1.0}``.
    param_dtype: dtype of ``b``.
  """

  def __init__(self, num_features: int, *, quantizer: str = "ste_sign",
               quantizer_kwargs: dict | None = None, param_dtype=jnp.float32):
    kwargs = dict(quantizer_kwargs or {})
    registry.get_quantizer(quantizer, **kwargs)  # unknown name or bad hyper-parameter
    if not registry.is_sign(quantizer):
      raise ValueError(f"quantizer={quantizer!r}"
                       + registry.not_sign_reason(quantizer, "RSign"))
    super().__init__(num_features, param_dtype=param_dtype)
    self.quantizer = quantizer
    self.quantizer_kwargs = tuple(sorted(kwargs.items()))

  def __call__(self, x: jax.Array) -> jax.Array:
    q = registry.get_quantizer(self.quantizer, **dict(self.quantizer_kwargs))
    return q(super().__call__(x))


class RPReLU(nnx.Module):
  """ReActNet's RPReLU (Eq. 4), per channel ``i``:

  ``f(x_i) = x_i − γ_i + ζ_i``           if ``x_i > γ_i``,
  ``f(x_i) = β_i·(x_i − γ_i) + ζ_i``     otherwise,

  with learned ``γ`` (shift of the input, init 0), ``β`` (negative slope, init
  0.25) and ``ζ`` (shift of the output, init 0): at initialisation a PReLU. With
  ``β = 0``, ``γ = ζ = 0`` it is ReLU. Continuous at ``x = γ``; the derivative there
  is taken from the ``β`` branch (PyTorch's PReLU). Gradients: ``∂f/∂x = 1`` or
  ``β``, ``∂f/∂γ = −∂f/∂x``, ``∂f/∂β = (x − γ)`` on the negative side (else 0),
  ``∂f/∂ζ = 1``.

  Args:
    num_features: channels (the last axis of the input).
    slope_init: initial ``β`` (0.25, PyTorch's ``nn.PReLU`` default, as ReActNet).
    param_dtype: dtype of the parameters.
  """

  def __init__(self, num_features: int, *, slope_init: float = 0.25,
               param_dtype=jnp.float32):
    n = _check_features(num_features)
    self.gamma = ThresholdShift(jnp.zeros((n,), param_dtype))
    self.beta = PReLUSlope(jnp.full((n,), slope_init, param_dtype))
    self.zeta = ThresholdShift(jnp.zeros((n,), param_dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = x.dtype
    z = x - self.gamma[...].astype(dtype)
    return jnp.where(z > 0, z, self.beta[...].astype(dtype) * z) + self.zeta[...].astype(dtype)
