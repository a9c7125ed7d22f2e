"""The model zoo: the networks the four papers binarise, chosen by name.

======== ======================================= =========================================
name     model                                   paper
======== ======================================= =========================================
resnet18 :class:`ResNet18` (Bi-Real shortcuts)    BONN §3.1.3, XNOR-Net++ §5.1, CF §5.2.4
wrn22    :class:`WRN22`                           BONN §3.1.2, Table 3
nin      :class:`NIN`                             cross-filter §5.2.1
vgg7     :class:`VGG7`                            cross-filter §5.2.2 (TWN/TBN's VGG-7)
alexnet  :class:`AlexNet`                         cross-filter §5.2.3, XNOR-Net++ §5.1
======== ======================================= =========================================

Every model is built as ``Model(*, num_classes, input_shape, spec, quantize_first,
quantize_last, rngs, **model_kwargs)`` and called as ``model(x, *, train=False,
return_features=False)`` on NHWC ``x``, returning logits ``(N, num_classes)`` or
``(logits, features)`` with ``features`` the ``(N, D)`` input of the classifier (BONN's
feature loss). ``spec`` quantizes the hidden layers; the first and last layers are FP
unless ``quantize_first``/``quantize_last``; shortcut convs are always FP. Hidden
layers follow the binary-input rule of :mod:`bnnjax.models.common`.

Every model also takes ``reactnet`` (default False): ReActNet's learnable thresholds,
RSign's learned per-channel shift before each binary-input layer and RPReLU on the
real-valued outputs of the layers (where, per model: docs/reactnet.md).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Callable

from flax import nnx

from bnnjax.models.common import PreAct
from bnnjax.models.common import input_activation
from bnnjax.models.layer_string import parse_layers
from bnnjax.models.resnet import ResNet18
from bnnjax.models.sequential import AlexNet
from bnnjax.models.sequential import LayerStringNet
from bnnjax.models.sequential import NIN
from bnnjax.models.sequential import VGG7
from bnnjax.models.wrn import WRN22
from bnnjax.nn.spec import QuantSpec

MODELS: dict[str, Callable[..., nnx.Module]] = {
    "resnet18": ResNet18,
    "wrn22": WRN22,
    "nin": NIN,
    "vgg7": VGG7,
    "alexnet": AlexNet,
}

_COMMON_ARGS = ("num_classes", "input_shape", "spec", "quantize_first", "quantize_last",
                "rngs")


def model_kwargs(name: str) -> tuple[str, ...]:
  """The model-specific keyword arguments of model ``name`` (e.g. ``width``)."""
  params = inspect.signature(MODELS[name].__init__).parameters
  return tuple(p for p in params if p not in _COMMON_ARGS and p != "self")


def get_model(name: str, *, num_classes: int, input_shape: tuple[int, int, int],
              spec: QuantSpec, quantize_first: bool = False,
              quantize_last: bool = False, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
  """Builds model ``name`` (a key of :data:`MODELS`).

  Args:
    name: model name, e.g. ``"resnet18"``.
    num_classes: classifier outputs.
    input_shape: ``(H, W, C)`` of one example; sets the spatial sizes that XNOR-Net++
      Γ cases 2-4 need and the flattened size of dense layers.
    spec: :class:`~bnnjax.nn.QuantSpec` of the hidden layers.
    quantize_first: quantize the first layer with ``spec`` too (else FP).
    quantize_last: quantize the classifier with ``spec`` too (else FP).
    rngs: ``nnx.Rngs`` with a ``params`` stream (and ``dropout`` if the model drops).
    **kwargs: model-specific arguments (:func:`model_kwargs`), e.g. ``width`` or
      ``width_mult``, ``stem``, ``widths``, ``dropout``, and ``reactnet`` (every
      model: ReActNet's RSign and RPReLU, docs/reactnet.md).

  Raises:
    ValueError: unknown ``name`` (names ``model_name`` and the allowed values), or a
      bad configuration (e.g. a cross-filter ``group_size`` that does not divide a
      layer's filters).
    TypeError: keyword arguments the model does not take (all of them named).
  """
  if name not in MODELS:
    raise ValueError(
        f"model_name={name!r} is not a known model; allowed values are {list(MODELS)}.")
  allowed = model_kwargs(name)
  unknown = sorted(set(kwargs) - set(allowed))
  if unknown:
    raise TypeError(
        f"model_name={name!r} takes no keyword argument(s) {unknown}; its model "
        f"arguments are {list(allowed)}.")
  model = MODELS[name](num_classes=num_classes, input_shape=tuple(input_shape), spec=spec,
                       quantize_first=quantize_first, quantize_last=quantize_last,
                       rngs=rngs, **kwargs)
  model.build_args_json = json.dumps({
      "name": name, "num_classes": num_classes, "input_shape": list(input_shape),
      "spec": dataclasses.asdict(spec), "quantize_first": bool(quantize_first),
      "quantize_last": bool(quantize_last), "kwargs": kwargs})
  return model


def build_args(model: nnx.Module) -> dict | None:
  """The arguments :func:`get_model` built ``model`` with (JSON-able), or ``None``."""
  text = getattr(model, "build_args_json", None)
  return None if text is None else json.loads(text)


def build_model(args: dict, *, rngs: nnx.Rngs | None = None) -> nnx.Module:
  """Rebuilds a model from :func:`build_args` (fresh parameters from ``rngs``)."""
  spec = dict(args["spec"])
  for key in ("input_quantizer_kwargs", "kernel_quantizer_kwargs"):
    spec[key] = tuple(tuple(kv) for kv in spec.get(key, ()))
  return get_model(args["name"], num_classes=args["num_classes"],
                   input_shape=tuple(args["input_shape"]), spec=QuantSpec(**spec),
                   quantize_first=args["quantize_first"],
                   quantize_last=args["quantize_last"],
                   rngs=rngs or nnx.Rngs(params=0, dropout=1), **args["kwargs"])


__all__ = [
    "MODELS", "get_model", "build_args", "build_model", "model_kwargs", "ResNet18", "WRN22", "NIN", "VGG7", "AlexNet",
    "LayerStringNet", "PreAct", "input_activation", "parse_layers",
]
