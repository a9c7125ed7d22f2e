"""One place that checks a training config before anything is written or compiled.

``validate(config)`` is called by :func:`bnnjax.train.train_and_evaluate` (so by
``experiments.run``, ``experiments.sweep`` and ``experiments.ptq``) before it touches
the workdir. It checks every field the trainer reads: types, zero / negative /
non-finite values, allowed names, and fields the trainer does not know (with the close
names). Errors are :class:`ConfigError`, a ``ValueError`` whose message names the field,
its value and what is allowed.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Iterable, Mapping

import ml_collections

from bnnjax.methods.bonn import KERNEL_NORMALISATIONS


class ConfigError(ValueError):
  """A configuration or usage error: the message names the field and what is allowed.

  The command-line tools print it as one line, without a traceback.
  """


# Fields that configs may add on top of configs/common.py's base_config(): BONN's
# (configs.common.add_bonn) and experiments.ptq's sweep block (not read by the trainer).
# Code that reads fields of its own (a custom loss term) adds their names here.
EXTRA_FIELDS = {"bonn_lambda", "bonn_theta", "bonn_nu", "bonn_center_rate",
                "bonn_feature_start_epoch", "bonn_kernel_decoupled",
                "bonn_kernel_normalise", "ptq"}


def _bad(field: str, value: Any, allowed: str) -> ConfigError:
  return ConfigError(f"config.{field}={value!r}; allowed values are {allowed}.")


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(lo: int, optional: bool = False, none_means: str = "") -> Callable:
  def check(field, v):
    if v is None and optional:
      return
    if not (_is_int(v) and v >= lo):
      extra = f", or None{none_means}" if optional else ""
      raise _bad(field, v, f"integers >= {lo}{extra}")
  return check


def _real(lo: float | None = None, *, strict: bool = False, hi: float | None = None,
          hi_strict: bool = False, optional: bool = False) -> Callable:
  def check(field, v):
    if v is None and optional:
      return
    ok = _is_number(v) and math.isfinite(v)
    if ok and lo is not None:
      ok = v > lo if strict else v >= lo
    if ok and hi is not None:
      ok = v < hi if hi_strict else v <= hi
    if not ok:
      parts = ["finite numbers"]
      if lo is not None:
        parts.append(f"{'>' if strict else '>='} {lo}")
      if hi is not None:
        parts.append(f"{'<' if hi_strict else '<='} {hi}")
      text = " ".join(parts[:2]) + (f" and {parts[2]}" if len(parts) > 2 else "")
      raise _bad(field, v, text + (", or None" if optional else ""))
  return check


def _bool(field, v):
  if not isinstance(v, bool):
    raise _bad(field, v, "True or False")


def _str(optional: bool = False) -> Callable:
  def check(field, v):
    if v is None and optional:
      return
    if not isinstance(v, str) or not v:
      raise _bad(field, v, "non-empty strings" + (", or None" if optional else ""))
  return check


def _one_of(choices: Iterable[str], optional: bool = False) -> Callable:
  choices = tuple(choices)

  def check(field, v):
    if v is None and optional:
      return
    if v not in choices:
      raise _bad(field, v, f"{list(choices)}" + (" or None" if optional else ""))
  return check


def _mapping(field, v):
  if not isinstance(v, (Mapping, ml_collections.ConfigDict)):
    raise _bad(field, v, "a dict (ConfigDict)")


def _quantizer_kwargs(field, v):
  """A dict of quantizer hyper-parameters with Python scalar values; the names and
  values are checked against the quantizer when the spec is resolved
  (:func:`bnnjax.methods.from_config`)."""
  _mapping(field, v)
  for name, value in dict(v).items():
    if value is not None and not isinstance(value, (bool, int, float, str)):
      raise _bad(f"{field}.{name}", value, "Python scalars (int, float, bool, str) or None")


def _decay_epochs(field, v):
  if v is None:
    return
  ok = isinstance(v, (tuple, list)) and all(
      _is_number(e) and math.isfinite(e) and e >= 0 for e in v)
  if ok and list(v) != sorted(v):
    ok = False
  if not ok:
    raise _bad(field, v, "an increasing tuple of epochs >= 0, or None")


def _group_lr(field, v):
  _mapping(field, v)
  for name, lr in dict(v).items():
    if not (_is_number(lr) and math.isfinite(lr) and lr >= 0):
      raise _bad(f"{field}.{name}", lr, "finite numbers >= 0")


def _loss_terms(field, v):
  _mapping(field, v)
  for name, kw in dict(v).items():
    if isinstance(kw, (Mapping, ml_collections.ConfigDict)) and "weight" in kw:
      w = kw["weight"]
      if not (_is_number(w) and math.isfinite(w) and w >= 0):
        raise _bad(f"{field}.{name}.weight", w, "finite numbers >= 0")


def _computes() -> tuple[str, ...]:
  from bnnjax import nn
  return tuple(getattr(nn, "COMPUTES", ("float", "packed", "auto")))


def _compute_dtypes() -> tuple[str, ...]:
  from bnnjax.nn import spec
  return spec.COMPUTE_DTYPES


def _float_precisions() -> tuple[str, ...]:
  from bnnjax.nn import layers
  return layers.FLOAT_PRECISIONS


def _checks() -> dict[str, Callable]:
  from bnnjax.train import optim
  return {
      "seed": _int(0),
      "dataset": _str(),
      "data_dir": _str(optional=True),
      "num_train_examples": _int(1, optional=True, none_means=" for the whole split"),
      "num_test_examples": _int(1, optional=True, none_means=" for the whole split"),
      "image_size": _int(1, optional=True, none_means=" for the dataset's size"),
      "augment": _bool,
      "model_name": _str(),
      "model_kwargs": _mapping,
      "method": _str(),
      "group_size": _int(1, optional=True),
      "gamma_case": _int(1, optional=True),
      "input_quantizer": _str(optional=True),
      "kernel_quantizer": _str(optional=True),
      "input_quantizer_kwargs": _quantizer_kwargs,
      "kernel_quantizer_kwargs": _quantizer_kwargs,
      "pad_value": _real(optional=True),
      "quantize_first": _bool,
      "quantize_last": _bool,
      "binary_compute": _one_of(_computes(), optional=True),
      "binary_compute_dtype": _one_of(_compute_dtypes(), optional=True),
      "train_float_precision": _one_of(_float_precisions()),
      "batch_size": _int(1),
      "eval_batch_size": _int(1),
      "num_epochs": _real(0, strict=True),
      "num_train_steps": _int(1, optional=True, none_means=" to use num_epochs"),
      "optimizer": _one_of(optim.OPTIMIZERS),
      "lr": _real(0, strict=True),
      "momentum": _real(0, hi=1, hi_strict=True),
      "nesterov": _bool,
      "weight_decay": _real(0),
      "schedule": _one_of(optim.SCHEDULES),
      "decay_every_epochs": _real(0, strict=True),
      "decay_epochs": _decay_epochs,
      "decay_factor": _real(0, strict=True, hi=1),
      "warmup_epochs": _real(0),
      "group_lr": _group_lr,
      "clip_latent": _real(0, strict=True, optional=True),
      "grad_clip_norm": _real(0, strict=True, optional=True),
      "kernel_optimizer": _one_of(optim.KERNEL_OPTIMIZERS),
      "bop_gamma": _real(0, strict=True, hi=1),
      "bop_threshold": _real(0),
      "bop_gamma_schedule": _one_of(optim.SCHEDULES, optional=True),
      "loss_terms": _loss_terms,
      "init_from": _str(optional=True),
      "init_from_step": _int(0, optional=True, none_means=" for the latest checkpoint"),
      "log_every_steps": _int(1),
      "checkpoint_every_steps": _int(1),
      "eval_every_steps": _int(0),
      "histogram_every_steps": _int(0),
      "diagnostics_per_layer": _bool,
      "keep_checkpoints": _int(1),
      "progress": _bool,
      "tensorboard": _bool,
      "bonn_lambda": _real(0),
      "bonn_theta": _real(0),
      "bonn_nu": _real(0),
      "bonn_center_rate": _real(0, hi=1),
      "bonn_feature_start_epoch": _real(0),
      "bonn_kernel_decoupled": _bool,
      "bonn_kernel_normalise": _one_of(KERNEL_NORMALISATIONS),
  }


def known_fields() -> set[str]:
  """The top-level fields a training config may hold (every field of
  configs/common.py's base_config() is checked here; tests/configs_test.py keeps the
  two in step)."""
  return set(_checks()) | set(EXTRA_FIELDS)


def close_names(name: str, names: Iterable[str]) -> list[str]:
  """Up to three of ``names`` that look like ``name`` (for "did you mean")."""
  names = sorted(names)
  close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
  return close or [n for n in names if name in n or n in name][:3]


def unknown_field_message(field: str, names: Iterable[str], prefix: str = "config.") -> str:
  close = close_names(field.split(".")[-1], names)
  hint = (f" Did you mean {', '.join(prefix + c for c in close)}?" if close
          else " The fields are those of configs/common.py base_config().")
  return f"{prefix}{field} is not a config field.{hint}"


def validate(config) -> None:
  """Checks every field of a training ``config``; raises :class:`ConfigError`.

  Needs no data and builds nothing; the model, dataset and loss-term names are checked
  afterwards by :func:`bnnjax.train.set_up` (also before anything is written).
  """
  known = known_fields()
  for key in config.keys():
    if key not in known:
      raise ConfigError(unknown_field_message(key, known))
  for field, check in _checks().items():
    if field in config:
      check(field, config[field])
  steps = config.get("num_train_steps", None)
  if steps is None and "num_epochs" not in config:
    raise ConfigError("config.num_epochs or config.num_train_steps must be set.")
