"""The quantizer registry: names → quantizer functions, with what each one's forward
values are (docs/quantizers.md).

Layers, specs and configs pick quantizers by name (``QuantSpec.input_quantizer``,
``QuantSpec.kernel_quantizer``, ``config.input_quantizer`` ...); the hyper-parameters
travel beside the name (``QuantSpec.kernel_quantizer_kwargs``,
``config.kernel_quantizer_kwargs``). Other code asks the registry about a name instead
of keeping lists of its own: :func:`is_sign` says whether the forward value is
``sign(x) ∈ {−1, +1}`` with ``sign(0) = +1`` — what the bit-packed XNOR-popcount path
(``QuantSpec.compute="packed"``) and the packed export (:mod:`bnnjax.packed`) need —
and :func:`bits` how many bits one quantized value takes.

========================= =============== ============================ ==========
name                      forward values  backward                     Larq
========================= =============== ============================ ==========
``ste_sign``              ±1              ``g·1{|x|<=clip}``           SteSign
``approx_sign``           ±1              ``g·(2−2|x|)·1{|x|<=1}``     ApproxSign
``swish_sign``            ±1              SignSwish derivative         SwishSign
``identity_sign``         ±1              ``g``                        –
``ste_heaviside``         {0, 1}          ``g·1{|x|<=clip}``           SteHeaviside
``magnitude_aware_sign``  ±mean|x[…, o]|  ``g·a_o·1{|x|<=clip}``       MagnitudeAwareSign
``ste_tern``              {−1, 0, 1}      ``g·1{|x|<=clip}``           SteTern
``dorefa``                2^k levels      clip/tanh chain              DoReFa
========================= =============== ============================ ==========
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from bnnjax.quant import kbit
from bnnjax.quant import sign as sign_lib

Quantizer = Callable[[jax.Array], jax.Array]

# The kinds of forward values, and what each is (for messages and docs).
VALUES = {
    "sign": "{-1, +1} with sign(0) = +1",
    "heaviside": "{0, 1}",
    "scaled_sign": "{-a_o, +a_o}, a_o = mean|x[..., o]|",
    "ternary": "{-1, 0, +1}",
    "k_bit": "2^k_bit levels in [0, 1] (activations) or [-1, 1] (weights)",
}


@dataclasses.dataclass(frozen=True)
class QuantizerInfo:
  """What the registry knows of one quantizer.

  Attributes:
    name: its registered name.
    fn: the function ``fn(x, **hyper_parameters)``.
    values: the kind of its forward values, a key of :data:`VALUES`; ``"sign"``
      means exactly ``sign(x)`` with ``sign(0) = +1`` (one bit, bit 1 ↔ +1).
    larq: the Larq quantizer it reproduces (``""`` if none).
    paper: where it comes from.
    bits_fn: bits per quantized value, from the hyper-parameters.
  """

  name: str
  fn: Callable[..., jax.Array]
  values: str
  larq: str
  paper: str
  bits_fn: Callable[[Mapping[str, Any]], int] = lambda kwargs: 1

  @property
  def is_sign(self) -> bool:
    """Whether the forward value is ``sign(x) ∈ {−1, +1}`` with ``sign(0) = +1``."""
    return self.values == "sign"

  @property
  def hyper_parameters(self) -> dict[str, Any]:
    """``{name: default}`` of its keyword hyper-parameters."""
    params = list(inspect.signature(self.fn).parameters.values())[1:]
    return {p.name: p.default for p in params}


_INFO: dict[str, QuantizerInfo] = {}
# name -> function, for code that only needs the functions (kept in step with _INFO).
QUANTIZERS: dict[str, Callable[..., jax.Array]] = {}


def register_quantizer(name: str, fn: Callable[..., jax.Array], *, values: str,
                       larq: str = "", paper: str = "",
                       bits: Callable[[Mapping[str, Any]], int] | int = 1
                       ) -> Callable[..., jax.Array]:
  """Registers ``fn(x, **hyper_parameters)`` under ``name``; returns ``fn``.

  Args:
    name: the name specs and configs use.
    fn: the quantizer; every argument after ``x`` is a keyword hyper-parameter with
      a default.
    values: the kind of its forward values, a key of :data:`VALUES`.
    larq: the Larq quantizer it reproduces.
    paper: where it comes from.
    bits: bits per value, or a function of the hyper-parameters giving them.

  Raises:
    ValueError: ``name`` is taken or ``values`` is not a key of :data:`VALUES`.
  """
  if name in _INFO:
    raise ValueError(f"Quantizer {name!r} is already registered.")
  if values not in VALUES:
    raise ValueError(f"register_quantizer({name!r}): values={values!r}; allowed values "
                     f"are {list(VALUES)}.")
  bits_fn = bits if callable(bits) else (lambda kwargs, b=int(bits): b)
  _INFO[name] = QuantizerInfo(name=name, fn=fn, values=values, larq=larq, paper=paper,
                              bits_fn=bits_fn)
  QUANTIZERS[name] = fn
  return fn


def names() -> tuple[str, ...]:
  """The registered names, sorted."""
  return tuple(sorted(_INFO))


def quantizer_info(name: str) -> QuantizerInfo:
  """The :class:`QuantizerInfo` of ``name``.

  Raises:
    ValueError: unknown name (the message lists the allowed ones).
  """
  if name not in _INFO:
    raise ValueError(
        f"Unknown quantizer {name!r}; allowed values are {list(names())}.")
  return _INFO[name]


def is_sign(name: str | None) -> bool:
  """Whether quantizer ``name`` computes ``sign(x) ∈ {−1, +1}`` with ``sign(0) = +1``
  forward (so one bit holds it and the packed kernels compute it exactly); ``False``
  for ``None`` (no quantizer) and unknown names."""
  return name in _INFO and _INFO[name].is_sign


def sign_quantizers() -> tuple[str, ...]:
  """The names :func:`is_sign` accepts, sorted."""
  return tuple(n for n in names() if _INFO[n].is_sign)


def not_sign_reason(name: str, needs: str) -> str:
  """The end of an error message for a quantizer that is not a ±1 sign: ``" is not a
  ±1 sign (its values are {0, 1}); <needs> needs one of [...]"``."""
  values = VALUES[_INFO[name].values] if name in _INFO else "unknown"
  return (f" is not a ±1 sign (its forward values are {values}); {needs} needs one of "
          f"{list(sign_quantizers())}.")


def _as_items(kwargs) -> tuple[tuple[str, Any], ...]:
  items = kwargs.items() if isinstance(kwargs, Mapping) else kwargs
  return tuple(sorted((str(k), v) for k, v in items))


@functools.lru_cache(maxsize=256)
def _check_cached(name: str, typed: tuple[tuple[str, type, Any], ...]) -> None:
  # The quantizer's own argument checks run while tracing, on a tiny abstract input.
  # The key holds the types: True == 1 must not pass as a cached k_bit=1.
  fn = functools.partial(_INFO[name].fn, **{k: v for k, _, v in typed})
  jax.eval_shape(fn, jax.ShapeDtypeStruct((2, 2), jnp.float32))


def check_kwargs(name: str, kwargs: Mapping[str, Any] | tuple = ()) -> None:
  """Checks the hyper-parameters ``kwargs`` of quantizer ``name``.

  Raises:
    ValueError: unknown quantizer; a hyper-parameter it does not take (the message
      names it and lists the allowed ones); a value that is not a Python scalar
      (``int``, ``float``, ``bool``, ``str`` or ``None``); a value the quantizer
      refuses (e.g. ``dorefa: k_bit=0; allowed values are integers 1..16``).
  """
  info = quantizer_info(name)
  items = _as_items(kwargs)
  allowed = info.hyper_parameters
  for key, value in items:
    if key not in allowed:
      raise ValueError(
          f"quantizer {name!r} takes no hyper-parameter {key!r}; allowed ones are "
          f"{list(allowed) or 'none'}.")
    if value is not None and not isinstance(value, (bool, int, float, str)):
      raise ValueError(
          f"{name}: {key}={value!r}; hyper-parameters are Python scalars (int, float, "
          "bool, str or None).")
  _check_cached(name, tuple((k, type(v), v) for k, v in items))


def get_quantizer(name: str, **kwargs) -> Quantizer:
  """Returns the quantizer called ``name``, with hyper-parameters bound.

  ``get_quantizer("ste_sign", clip=0.5)`` is ``lambda x: ste_sign(x, clip=0.5)``.
  An unknown name raises ``ValueError`` listing the known ones, an unknown or bad
  hyper-parameter one naming it (:func:`check_kwargs`).
  """
  check_kwargs(name, kwargs)
  fn = _INFO[name].fn
  return functools.partial(fn, **kwargs) if kwargs else fn


def bits(name: str, **kwargs) -> int:
  """Bits per quantized value of ``name`` with ``kwargs`` (Larq's ``precision``): 1
  for the one-bit quantizers, 2 for ``ste_tern``, ``k_bit`` for ``dorefa``."""
  check_kwargs(name, kwargs)
  info = _INFO[name]
  return int(info.bits_fn({**info.hyper_parameters, **kwargs}))


# ------------------------------------------------------------------------ built-ins
_BIREAL = "Bi-Real Net (Liu et al. 2018)"
register_quantizer("ste_sign", sign_lib.ste_sign, values="sign", larq="SteSign",
                   paper="BNN (Courbariaux et al. 2016); XNOR-Net; cross-filter Eq. 13")
register_quantizer("approx_sign", sign_lib.approx_sign, values="sign", larq="ApproxSign",
                   paper=_BIREAL)
register_quantizer("swish_sign", sign_lib.swish_sign, values="sign", larq="SwishSign",
                   paper="BNN+ (Darabi et al. 2018)")
register_quantizer("identity_sign", sign_lib.identity_sign, values="sign",
                   paper="plain straight-through estimator (Bengio et al. 2013)")
register_quantizer("ste_heaviside", sign_lib.ste_heaviside, values="heaviside",
                   larq="SteHeaviside", paper="Larq's {0, 1} binarization")
register_quantizer("magnitude_aware_sign", sign_lib.magnitude_aware_sign,
                   values="scaled_sign", larq="MagnitudeAwareSign",
                   paper=_BIREAL + ", §3.3")
register_quantizer("ste_tern", kbit.ste_tern, values="ternary", larq="SteTern",
                   paper="Ternary Weight Networks (Li et al. 2016)", bits=2)
register_quantizer("dorefa", kbit.dorefa, values="k_bit", larq="DoReFa",
                   paper="DoReFa-Net (Zhou et al. 2016), §2.3",
                   bits=lambda kwargs: int(kwargs["k_bit"]))
