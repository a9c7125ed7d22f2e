"""The method registry: names → :class:`~bnnjax.methods.base.Method`, and the one
place where a config's method string becomes a :class:`~bnnjax.nn.QuantSpec`.

* :func:`register` / :func:`unregister` a method under its names;
* :func:`get` the method of a name (any spelling: ``"XNOR-CF-4"``, ``"xnor++3"``),
  :func:`parse` a name into ``(name, number)``;
* :func:`resolve` a method string and the config's quantization fields into a spec,
  once, with errors that name the config field; :func:`from_config` does it for a
  config, and :func:`config_error` turns a :class:`~bnnjax.methods.SpecError` raised
  later (by a layer) into a message naming the config field that set the value;
* :func:`for_spec` finds the method of a spec (what layers, the model summary and the
  plots ask), :func:`label` names a spec, :func:`loss_terms` collects the methods'
  extra loss terms.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from bnnjax.methods.base import Method
from bnnjax.methods.base import SpecError

# The config fields a method string is resolved with (``bnnjax.train`` configs).
CONFIG_FIELDS = ("group_size", "gamma_case", "input_quantizer", "kernel_quantizer",
                 "input_quantizer_kwargs", "kernel_quantizer_kwargs", "pad_value",
                 "binary_compute", "binary_compute_dtype")
# QuantSpec fields whose config field has another name.
_CONFIG_NAME = {"compute": "binary_compute", "compute_dtype": "binary_compute_dtype"}
_DEFAULTS = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", pad_value=0.0,
                 binary_compute="auto", binary_compute_dtype="auto")

_METHODS: dict[str, Method] = {}  # name -> method, in registration order
_SPELLINGS: dict[str, str] = {}  # name or alias -> name
_NAME_RE = re.compile(r"^[a-z][a-z0-9_+]*[a-z_+]$|^[a-z]$")
_NUMBER_RE = re.compile(r"^(?:_?(\d+))?$")


def _normalise(method: str) -> str:
  return method.strip().lower().replace("-", "_")


def register(method: Method) -> Method:
  """Registers ``method`` under its :attr:`~Method.names` and aliases; returns it.

  Raises:
    ValueError: a name is taken, is not lower case, or ends in a digit (a number
      after a name is the method's :attr:`~Method.number_field`), or a loss term name
      is already another method's.
  """
  if not isinstance(method, Method):
    raise TypeError(f"register() takes a bnnjax.methods.Method, got {type(method).__name__}.")
  if not method.names:
    raise ValueError(f"{method!r} has no names.")
  spellings = [*method.names, *method.aliases]
  for s in spellings:
    if not isinstance(s, str) or not _NAME_RE.match(s):
      raise ValueError(f"Method name {s!r} must be lower case, start with a letter and "
                       "not end in a digit.")
    if s in _SPELLINGS:
      raise ValueError(f"Method name {s!r} is already registered ({_METHODS[_SPELLINGS[s]]!r}).")
  taken = set(loss_terms())
  clash = sorted(taken & set(method.loss_terms))
  if clash:
    raise ValueError(f"Loss terms {clash} of {method!r} are already registered.")
  for name in method.names:
    _METHODS[name] = method
    _SPELLINGS[name] = name
  for alias in method.aliases:
    _SPELLINGS[alias] = method.names[0]
  return method


def unregister(method: Method) -> None:
  """Removes ``method``'s names and aliases (tests register methods of their own)."""
  for name in [n for n, m in _METHODS.items() if m is method]:
    del _METHODS[name]
  for s in [s for s, n in _SPELLINGS.items() if n not in _METHODS]:
    del _SPELLINGS[s]


def methods() -> tuple[Method, ...]:
  """The registered methods, each once, in registration order."""
  return tuple(dict.fromkeys(_METHODS.values()))


def names(*, number_field: str | None = None) -> tuple[str, ...]:
  """The registered names (``("fp", "bwn", "xnor", "bw_cf", ...)``); with
  ``number_field``, only those whose appended number sets that field (e.g.
  ``names(number_field="group_size")`` gives the cross-filter methods)."""
  return tuple(n for n, m in _METHODS.items()
               if number_field is None or m.number_field == number_field)


def parse(method: str) -> tuple[str, int | None]:
  """Splits a method string into ``(name, number)``.

  Case-insensitive, ``-`` read as ``_``, aliases as their method (``"xnor++"`` is
  ``"xnorpp"``), so the papers' spellings work: ``"XNOR-CF-4"`` and ``"bw_cf2"`` give
  ``("xnor_cf", 4)`` and ``("bw_cf", 2)``, ``"XNOR++3"`` ``("xnorpp", 3)``.

  Raises:
    ValueError: no registered name fits (the message lists the allowed ones).
  """
  text = _normalise(str(method))
  # Longest spelling first: "xnor_cf_4" is xnor_cf's, not xnor's.
  for spelling in sorted(_SPELLINGS, key=len, reverse=True):
    if text.startswith(spelling):
      m = _NUMBER_RE.match(text[len(spelling):])
      if m:
        return _SPELLINGS[spelling], (int(m.group(1)) if m.group(1) else None)
  raise ValueError(
      f"config.method={method!r} is not a known method; allowed values are "
      f"{list(names())}, with the number appended where one applies "
      f"(e.g. {_examples()}).")


def _examples() -> str:
  out = []
  for m in methods():
    if m.number_field:
      out.append(f"'{m.names[-1]}_2'")
  return ", ".join(out) or "none take one"


def get(method: str) -> Method:
  """The registered method of a method string (any spelling :func:`parse` reads)."""
  return _METHODS[parse(method)[0]]


def for_spec(spec) -> Method:
  """The method whose spec ``spec`` is (the first registered that claims it).

  Raises:
    SpecError: no registered method claims it (an unknown ``weight_scale``).
  """
  for m in methods():
    if m.claims(spec):
      return m
  raise SpecError("weight_scale", spec.weight_scale,
                  f"; allowed values are {list(weight_scales())}.", owner="QuantSpec")


def weight_scales() -> tuple[str, ...]:
  """The ``QuantSpec.weight_scale`` values of the registered methods."""
  return tuple(dict.fromkeys(m.weight_scale for m in methods()))


def check_spec(spec) -> None:
  """The checks of ``spec``'s method (:meth:`Method.check_spec`); raises
  :class:`SpecError`."""
  for_spec(spec).check_spec(spec)


def label(spec) -> str:
  """A short name for a spec: the name it was resolved from where a preset fits
  (``"xnor"``, ``"bw_cf_4"``, ``"xnorpp_3"``, ``"bonn"``); other combinations get a
  descriptive label (``"sign"`` for binary input and kernel without a scale,
  ``"xnor-K"`` for XNOR-Net without ``K``)."""
  return for_spec(spec).label(spec)


def loss_terms() -> dict[str, Any]:
  """``{term name: builder}`` of every registered method's extra loss terms."""
  out: dict[str, Any] = {}
  for m in methods():
    out.update(m.loss_terms)
  return out


def training_only_variables() -> tuple[type, ...]:
  """The ``nnx.Variable`` types the registered methods own for training only."""
  return tuple(dict.fromkeys(t for m in methods() for t in m.training_only_variables))


def config_error(error: SpecError, config: Mapping[str, Any]) -> ValueError:
  """``error`` as a message naming the config field that set the value.

  The value of a spec field came from the config field of the same name (``compute``
  from ``binary_compute``) when the config sets that field, else from the method
  (its name's appended number, or its preset): ``config.group_size=3 does not divide
  ...`` or ``config.method='xnor_cf_3': group_size=3 does not divide ...``.

  Args:
    error: raised by a ``QuantSpec`` check, a method, or a layer.
    config: the config (any mapping with ``get``) holding ``method`` and the
      :data:`CONFIG_FIELDS`.
  """
  field = _CONFIG_NAME.get(error.field, error.field)
  given = config.get(field, None) if field in CONFIG_FIELDS else None
  if given is not None and not (field.endswith("_kwargs") and not given):
    if hasattr(given, "to_dict"):  # a ConfigDict of quantizer hyper-parameters
      given = given.to_dict()
    return ValueError(f"config.{field}={given!r}{error.reason}")
  return ValueError(f"config.method={config.get('method', None)!r}: "
                    f"{error.field}={error.value!r}{error.reason}")


def resolve(method: str, *, group_size: int | None = None, gamma_case: int | None = None,
            input_quantizer: str | None = None, kernel_quantizer: str | None = None,
            input_quantizer_kwargs: Mapping[str, Any] | None = None,
            kernel_quantizer_kwargs: Mapping[str, Any] | None = None,
            pad_value: float | None = None, binary_compute: str | None = None,
            binary_compute_dtype: str | None = None):
  """The :class:`~bnnjax.nn.QuantSpec` of ``config.method`` and the config's
  quantization fields (``None`` = the default).

  Args:
    method: a registered name, optionally with its number appended (``"bw_cf_4"``,
      ``"XNOR-CF-8"``, ``"xnorpp_2"``), see :func:`parse`.
    group_size: cross-filter ``n``, when not appended to the name.
    gamma_case: XNOR-Net++ case, when not appended to the name.
    input_quantizer: quantizer for binary inputs (default ``"ste_sign"``; any name of
      ``bnnjax.quant.QUANTIZERS``, docs/quantizers.md).
    kernel_quantizer: quantizer for binary kernels (default ``"ste_sign"``).
    input_quantizer_kwargs: hyper-parameters of the input quantizer, a dict (e.g.
      ``{"clip": 0.5}``); set on the spec only when the method quantizes the input.
    kernel_quantizer_kwargs: same for the kernel quantizer (e.g. ``{"k_bit": 2,
      "mode": "weights"}`` for ``dorefa``, ``{"threshold": 0.1}`` for ``ste_tern``).
    pad_value: border value of binary inputs, 0 or 1 (default 0).
    binary_compute: ``QuantSpec.compute`` of layers with binary input and kernel
      (default ``"auto"``); full-precision specs ignore it.
    binary_compute_dtype: ``QuantSpec.compute_dtype`` of those layers (default
      ``"auto"``).

  Raises:
    ValueError: naming the config field at fault, e.g. ``config.method='foo' is not
      a known method; allowed values are [...]``, ``config.method='bw_cf' needs
      config.group_size``, ``config.gamma_case=5; allowed values are [1, 2, 3, 4]``,
      ``config.kernel_quantizer_kwargs={'k_bit': 0}: dorefa: k_bit=0; allowed values
      are integers 1..16.``
  """
  from bnnjax.nn.spec import QuantSpec  # nn.spec checks specs with this registry
  fields = dict(group_size=group_size, gamma_case=gamma_case,
                input_quantizer=input_quantizer, kernel_quantizer=kernel_quantizer,
                input_quantizer_kwargs=input_quantizer_kwargs,
                kernel_quantizer_kwargs=kernel_quantizer_kwargs,
                pad_value=pad_value, binary_compute=binary_compute,
                binary_compute_dtype=binary_compute_dtype)
  config = {"method": method, **fields}
  name, number = parse(method)
  m = _METHODS[name]
  if number is not None:
    if m.number_field is None:
      raise ValueError(f"config.method={method!r}: {name!r} takes no number.")
    given = fields[m.number_field]
    if given is not None and given != number:
      raise ValueError(f"config.method={method!r} conflicts with "
                       f"config.{m.number_field}={given!r}.")
  elif m.number_field is not None:
    number = fields[m.number_field]
    if number is None:
      raise ValueError(
          f"config.method={method!r} needs config.{m.number_field} ({m.number_help}), "
          f"or the number appended to the name (e.g. '{name}_2').")
  opts = {k: _DEFAULTS[k] if fields[k] is None else fields[k]
          for k in ("input_quantizer", "kernel_quantizer", "pad_value", "binary_compute",
                    "binary_compute_dtype")}
  try:
    preset = m.preset(name, number, input_quantizer=opts["input_quantizer"],
                      kernel_quantizer=opts["kernel_quantizer"], pad_value=opts["pad_value"])
    # Hyper-parameters go with the quantizers the preset uses (as input_quantizer
    # itself, they are ignored by a method that keeps the input in float).
    for q in ("input_quantizer", "kernel_quantizer"):
      if preset.get(q) is not None and fields[q + "_kwargs"]:
        preset[q + "_kwargs"] = fields[q + "_kwargs"]
    spec = QuantSpec(**preset)
    # Checked for every method, used by binary ones: full-precision layers ignore it.
    with_compute = dataclasses.replace(spec, compute=opts["binary_compute"],
                                       compute_dtype=opts["binary_compute_dtype"])
  except SpecError as e:
    raise config_error(e, config) from e
  return spec if spec.full_precision else with_compute


def from_config(config: Mapping[str, Any]):
  """:func:`resolve` of ``config.method`` with the config's :data:`CONFIG_FIELDS`."""
  return resolve(config["method"], **{f: config.get(f, None) for f in CONFIG_FIELDS})
