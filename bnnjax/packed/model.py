"""Packed inference for every model of the zoo: binary layers swapped for packed ones.

:func:`pack_model` copies a trained model and replaces, in its NNX graph, every
:class:`~bnnjax.nn.QuantConv` / :class:`~bnnjax.nn.QuantDense` whose kernel is binary
by a :class:`PackedConv` / :class:`PackedDense` holding the kernel's signs as ``uint32``
words (bit 1 ↔ +1, packed along ``c_in``) and its folded weight scale
(``layer.folded_scale()``: XNOR's α, cross-filter's shared α, XNOR-Net++'s Γ, BONN's
``1/mean(w)``). Everything else (batch norms, pools, full-precision layers, the model's
own ``__call__`` and topology) is left as it is, so the packed model is the same
function as the eval-mode model, whatever the architecture:

* **binary input and kernel** (XNOR, XNOR-CF, XNOR-Net++, BONN): ``sign(x)`` is packed
  per pixel and multiplied by XNOR-popcount (:func:`bnnjax.kernels.binary_conv_packed`,
  with the spec's +1 or 0 border); the integer result is exactly the ±1 float product
  of the training layer, and ``K``, the scale and the bias follow in the layer's order,
  so the logits equal the eval-mode model's bit for bit on CPU when both run eagerly.
  Under ``jax.jit`` the training model computes its scale (``mean|W|``, Γ) from the
  latent weights inside a fused program, which may round its last bit differently
  from the scale folded once here: logits then agree to about 1e-7 relative;
* **binary kernel, float input** (BWN, BW-CF): 1-bit storage, unpacked to ±1 for the
  float conv (:func:`bnnjax.kernels.float_conv.conv2d`, as in training);
* **full precision** (stems, shortcuts, classifiers by default, ``fp`` models): kept.

ReActNet models (``reactnet=True``, docs/reactnet.md#packed-inference) need nothing
more: RSign's shift and RPReLU are modules of the model in front of the binary layers,
kept as they are, so a packed layer packs ``sign(x + b)`` of the already shifted input,
exactly as the eval-mode layer signs it; :func:`save` stores their parameters.

:func:`save` writes one ``.npz``: the sign bits of each binary kernel as one bit stream
(``kh·kw·c_in·c_out`` bits, 32× smaller than float32 up to the last word), every other
array as stored, and a JSON header with the model's build arguments (recorded by
:func:`bnnjax.models.get_model`), from which :func:`load` rebuilds the same graph.
Training-only state (BONN's ``μ``, ``σ`` and class centres, optimizer state) is not
stored.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bnnjax import kernels
from bnnjax import models
from bnnjax import nn
from bnnjax.flat_tree import FlatTree
from bnnjax.kernels import float_conv
from bnnjax.nn import layers as layers_lib
from bnnjax.quant import registry as quantizers
from bnnjax.tree_paths import path_name

FORMAT = "bnnjax.packed/2"
META_KEY = "__meta__"


class PackedBits(nnx.Variable):
  """Sign bits of a binary kernel as ``uint32`` words (bit 1 ↔ +1)."""


class TapSums(nnx.Variable):
  """``Σ_c sign(W[t, c, o])`` per kernel tap (derived from the bits; not stored)."""


class FoldedScale(nnx.Variable):
  """A binary layer's weight scale folded into one tensor (inference only)."""


# ------------------------------------------------------------------------ bit storage
def pack_sign_stream(w: np.ndarray) -> np.ndarray:
  """``sign(w)`` of any shape as one little-endian bit stream in ``uint32`` words."""
  bits = (np.asarray(w) >= 0).reshape(-1)
  pad = (-bits.size) % 32
  bits = np.concatenate([bits, np.zeros(pad, bool)])
  return np.packbits(bits, bitorder="little").view("<u4").astype(np.uint32)


def unpack_sign_stream(words: np.ndarray, shape) -> np.ndarray:
  """Inverse of :func:`pack_sign_stream`: bool bits (True ↔ +1) of ``shape``."""
  n = int(np.prod(shape))
  bits = np.unpackbits(np.asarray(words, "<u4").view(np.uint8), bitorder="little")
  return bits[:n].astype(bool).reshape(shape)


# ---------------------------------------------------------------------- packed layers
def _not_sign(spec) -> list[tuple[str, str]]:
  """``(field, name)`` of the spec's quantizers that one bit per value cannot hold: a
  bit holds only a ±1 sign with sign(0) = +1 (:func:`bnnjax.quant.is_sign`)."""
  names = {f: getattr(spec, f) for f in ("input_quantizer", "kernel_quantizer")}
  return [(field, name) for field, name in names.items()
          if name is not None and not quantizers.is_sign(name)]


class _PackedLayer(nnx.Module):
  """What :class:`PackedConv` and :class:`PackedDense` share."""

  def _setup(self, layer, axis: int):
    spec = layer.spec
    for field, name in _not_sign(spec):
      raise ValueError(
          f"QuantSpec.{field}={name!r} of {type(layer).__name__}("
          f"{layer.in_features} -> {layer.out_features})" + quantizers.not_sign_reason(
              name, "the packed export (one bit per value)"))
    self.spec = spec
    self.in_features, self.out_features = layer.in_features, layer.out_features
    self.kernel_shape = tuple(layer.kernel[...].shape)
    self.kernel_axis = axis
    self.kernel_words = PackedBits(kernels.pack_bits(layer.kernel[...], axis=axis))
    s = layer.folded_scale()
    self.scale = None if s is None else FoldedScale(jnp.asarray(s))
    self.bias = None if layer.bias is None else nnx.Param(layer.bias[...])

  def _kernel_pm1(self, dtype):
    """The ±1 kernel (for float-input layers)."""
    bits = kernels.unpack_bits(self.kernel_words[...], self.kernel_shape[self.kernel_axis],
                               axis=self.kernel_axis, dtype=jnp.int32)
    return bits.astype(dtype)

  def _finish(self, y, k_map, s):
    # The very function QuantConv/QuantDense finish with: the same float rounding.
    return layers_lib.finish(y, k_map, s, self.bias)

  def nbytes(self) -> int:
    """Bytes stored on disk: the kernel as a bit stream, scale and bias as float32."""
    n = 4 * -(-int(np.prod(self.kernel_shape)) // 32)
    for v in (self.scale, self.bias):
      n += 0 if v is None else int(np.asarray(v[...]).nbytes)
    return n


class PackedConv(_PackedLayer):
  """A binary :class:`~bnnjax.nn.QuantConv` for inference, from 1-bit kernel words."""

  def __init__(self, layer: nn.QuantConv):
    self._setup(layer, axis=2)
    self.kernel_size, self.strides = layer.kernel_size, layer.strides
    self.padding, self.input_size = layer.padding, layer.input_size
    # Σ_c sign(W[t, c, o]) per tap, for zero padding's correction (not re-derived from
    # the words on every call). Recomputed from the bits on load, never stored.
    self.tap_sums = (TapSums(kernels.tap_sums(self.kernel_words[...], self.in_features))
                     if layer.spec.binary_input and layer.spec.pad_value == 0.0 else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    spec = self.spec
    pads = kernels.reference.conv_pads(self.padding, self.kernel_size, self.strides,
                                       x.shape[1:3])
    if spec.binary_input:
      y = kernels.binary_conv_packed(
          kernels.pack_bits(x, axis=-1), self.kernel_words[...],
          in_features=self.in_features, strides=self.strides, padding=pads,
          pad_value=spec.pad_value, implementation=layers_lib.packed_implementation(),
          sums=None if self.tap_sums is None else self.tap_sums[...])
      y = y.astype(x.dtype)
    else:
      y = layers_lib.float_product(
          lambda a, b, **kw: float_conv.conv2d(a, b, strides=self.strides,
                                               padding=pads, **kw),
          x, self._kernel_pm1(x.dtype), spec)
    k_map = (nn.layers.scales.activation_scale(x, self.kernel_size, self.strides, pads)
             if spec.activation_scale else None)
    s = None if self.scale is None else self.scale[...]
    return self._finish(y, k_map, s)


class PackedDense(_PackedLayer):
  """A binary :class:`~bnnjax.nn.QuantDense` for inference, from 1-bit kernel words."""

  def __init__(self, layer: nn.QuantDense):
    self._setup(layer, axis=0)

  def __call__(self, x: jax.Array) -> jax.Array:
    spec = self.spec
    if spec.binary_input:
      lead = x.shape[:-1]
      a = kernels.pack_bits(x.reshape(-1, x.shape[-1]), axis=1)
      y = kernels.xnor_matmul(a, self.kernel_words[...], self.in_features,
                              implementation=layers_lib.packed_implementation())
      y = y.astype(x.dtype).reshape(*lead, self.out_features)
    else:
      y = layers_lib.float_product(jnp.dot, x, self._kernel_pm1(x.dtype), spec)
    k_map = (nn.layers.scales.dense_activation_scale(x) if spec.activation_scale
             else None)
    s = None if self.scale is None else self.scale[...]
    if s is not None and s.ndim == 3:  # Γ cases 2-4 with h_out = w_out = 1
      s = s.reshape(-1)
    return self._finish(y, k_map, s)


# ------------------------------------------------------------------------ the swap
def _binary_layers(model):
  """``(path, layer)`` of every QuantConv/QuantDense with a binary kernel."""
  return [(path, node) for path, node in nnx.iter_graph(model)
          if isinstance(node, (nn.QuantConv, nn.QuantDense)) and node.spec.binary_kernel]


def packable(model) -> bool:
  """Whether :func:`pack_model` has something to pack in ``model``: at least one binary
  layer, and every binary layer's quantizers ±1 signs (one bit per value)."""
  layers = _binary_layers(model)
  return bool(layers) and not any(_not_sign(layer.spec) for _, layer in layers)


def _set(model, path, value):
  parent = model
  for key in path[:-1]:
    parent = parent[key] if isinstance(key, int) else getattr(parent, key)
  if isinstance(path[-1], int):
    parent[path[-1]] = value
  else:
    setattr(parent, path[-1], value)


def pack_model(model: nnx.Module) -> nnx.Module:
  """A copy of ``model`` for inference with every binary layer packed.

  Works for any NNX model built from :class:`~bnnjax.nn.QuantConv` /
  :class:`~bnnjax.nn.QuantDense` (the whole zoo, every method). The copy is the
  same function as the eval-mode model; call it as the model (``packed(x)``, ``packed(x, return_features=True)``).
  ``model`` itself is not changed.

  Raises:
    TypeError: ``model`` is not an ``nnx.Module`` or has no quantized layer at all.
    ValueError: a binary layer's input or kernel quantizer is not a ±1 sign
      (:func:`bnnjax.quant.is_sign`; ``ste_tern``, ``dorefa`` ... need more than a bit).
  """
  if not isinstance(model, nnx.Module):
    raise TypeError(f"pack_model packs an nnx.Module, got {type(model).__name__}.")
  if not any(isinstance(n, (nn.QuantConv, nn.QuantDense)) for _, n in nnx.iter_graph(model)):
    raise TypeError(f"pack_model: {type(model).__name__} has no QuantConv/QuantDense "
                    "layer to pack.")
  packed = nnx.clone(model)
  for path, layer in _binary_layers(packed):
    _set(packed, path, (PackedConv if isinstance(layer, nn.QuantConv) else PackedDense)(layer))
  packed.packed_format = FORMAT
  return packed


def packed_layers(model) -> list:
  """``(path, layer)`` of the packed layers of a packed model."""
  return [(p, n) for p, n in nnx.iter_graph(model) if isinstance(n, _PackedLayer)]


def nbytes(model) -> int:
  """Bytes :func:`save` stores for ``model``'s arrays (bit streams for packed kernels)."""
  total = 0
  for path, leaf in _flat_state(model):
    if _derived(path):
      continue
    total += int(np.asarray(leaf).nbytes)
  return total + sum(layer.nbytes() - _scale_bias_bytes(layer)
                     for _, layer in packed_layers(model))


def _scale_bias_bytes(layer) -> int:
  return sum(0 if v is None else int(np.asarray(v[...]).nbytes)
             for v in (layer.scale, layer.bias))


def float32_nbytes(model) -> int:
  """Bytes of every array of ``model`` (the unpacked model) as float32."""
  return int(sum(4 * np.size(x) for x in jax.tree.leaves(nnx.state(model))))


def inference_fn(model: nnx.Module, *, constants: bool | None = None):
  """``x ↦ model(x, train=False)`` jit-compiled, for packed and unpacked models.

  The function holds ``model``'s arrays as they are now (later changes to ``model`` do
  not reach it).

  Args:
    model: the model.
    constants: compile the arrays into the program as constants, so that XLA computes
      what depends on the weights alone once, at compile time (zero padding's border
      corrections, batch norm's ``rsqrt``): with 135 arrays that also saves passing
      them on every call, and made the packed ResNet-18 at batch 1 ~20% faster on a
      2-core CPU. Otherwise they are one argument (:class:`~bnnjax.flat_tree.FlatTree`,
      flattened once). Default (``None``): constants for a packed model (1-bit kernels,
      small), an argument for an unpacked one, whose float kernels would be folded at
      every compile (ResNet-18: 6.2 s against 4.2 s).
  """
  graphdef, state = nnx.split(model)
  if constants is None:
    constants = getattr(model, "packed_format", None) == FORMAT
  if constants:
    call = jax.jit(lambda x: nnx.merge(graphdef, state)(x, train=False))
  else:
    flat = FlatTree.of(state)  # flattened once, not per call (bnnjax.flat_tree)
    run = jax.jit(lambda flat, x: nnx.merge(graphdef, flat.tree())(x, train=False))
    call = functools.partial(run, flat)
  return lambda x: call(x if isinstance(x, (jax.Array, np.ndarray)) else jnp.asarray(x))


# ------------------------------------------------------------------------ save / load
def _derived(key: str) -> bool:
  """Arrays :func:`save` does not store as they are: kernel words (stored as bit
  streams) and tap sums (recomputed from the bits)."""
  return "/kernel_words" in key or "/tap_sums" in key


def _flat_state(model) -> list[tuple[str, jax.Array]]:
  # Inference needs parameters and batch statistics, not RNG state or BONN's priors.
  state = nnx.state(model, nnx.Not(nnx.RngState))
  leaves = jax.tree_util.tree_leaves_with_path(state)
  return [(path_name(p), v) for p, v in leaves
          if not any(str(getattr(k, "key", "")).startswith("bonn_") for k in p)
          and "centers" not in path_name(p) and "prior" not in path_name(p)]


def save(model: nnx.Module, path: str, *, build_args: dict | None = None,
         extra: dict | None = None, overwrite: bool = False) -> str:
  """Writes a packed model (:func:`pack_model`) to ``path`` (``.npz``); returns the path.

  Args:
    model: a packed model.
    path: file to write (``.npz`` appended when missing).
    build_args: how to rebuild the graph (default: the ``build_args`` that
      :func:`bnnjax.models.get_model` recorded on the model).
    extra: JSON-able information stored in the header (e.g. the run's config).
    overwrite: replace an existing file (otherwise refused).
  """
  if getattr(model, "packed_format", None) != FORMAT:
    raise ValueError("save writes a packed model: call bnnjax.packed.pack_model first.")
  build_args = build_args or models.build_args(model)
  if build_args is None:
    raise ValueError("This model was not built by bnnjax.models.get_model, so its build "
                     "arguments are unknown: pass build_args={'name': ..., ...}.")
  if not path.endswith(".npz"):
    path += ".npz"
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} exists; choose another path or pass overwrite=True.")
  arrays = {}
  shapes = {}
  for key, leaf in _flat_state(model):
    if _derived(key):
      continue
    arrays[key] = np.asarray(leaf)
  for p, layer in packed_layers(model):
    name = path_name(p)
    bits = kernels.unpack_bits(layer.kernel_words[...], layer.kernel_shape[layer.kernel_axis],
                               axis=layer.kernel_axis, dtype=jnp.int32)
    arrays[f"{name}/kernel_bits"] = pack_sign_stream(np.asarray(bits))
    shapes[name] = list(layer.kernel_shape)
  meta = {"format": FORMAT, "build_args": build_args, "kernel_shapes": shapes,
          "extra": extra or {}}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, **{META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)},
           **arrays)
  os.replace(tmp, path)
  return path


def _not_packed(path, why):
  return ValueError(f"{path} is not a packed model written by bnnjax.packed.save ({why}).")


def load(path: str, *, with_meta: bool = False):
  """Reads a packed model written by :func:`save`; with ``with_meta`` also its header.

  Raises:
    ValueError: the file is not a packed model (or of another format version).
  """
  try:
    with open(path, "rb") as raw:
      head = raw.read(4)
  except OSError as e:
    raise _not_packed(path, f"cannot be read: {e}") from None
  if head != b"PK\x03\x04":  # numpy would call any other bytes "pickled data"
    raise _not_packed(path, "not an .npz archive: it does not begin with a zip header")
  try:
    f = np.load(path, allow_pickle=False)
  except (ValueError, OSError, zipfile.BadZipFile) as e:
    raise _not_packed(path, f"not an .npz archive: {e}") from None
  with f:
    if not hasattr(f, "files") or META_KEY not in f.files:
      raise _not_packed(path, f"no {META_KEY} entry")
    meta = json.loads(bytes(f[META_KEY]).decode())
    if meta.get("format") != FORMAT:
      raise _not_packed(path, f"format {meta.get('format')!r}, expected {FORMAT!r}")
    arrays = {k: f[k] for k in f.files if k != META_KEY}
  model = pack_model(models.build_model(meta["build_args"]))
  for p, layer in packed_layers(model):
    name = path_name(p)
    bits = unpack_sign_stream(arrays.pop(f"{name}/kernel_bits"), meta["kernel_shapes"][name])
    layer.kernel_words[...] = kernels.pack_bits(bits, axis=layer.kernel_axis)
    if getattr(layer, "tap_sums", None) is not None:
      layer.tap_sums[...] = kernels.tap_sums(layer.kernel_words[...], layer.in_features)
  state = nnx.state(model, nnx.Not(nnx.RngState))
  flat = dict(_flat_state(model))
  missing = sorted(k for k in flat if not _derived(k) and k not in arrays)
  if missing:
    raise _not_packed(path, f"missing arrays {missing[:5]}")

  def replace(p, v):
    key = path_name(p)
    return jnp.asarray(arrays[key], v.dtype) if key in arrays else v
  nnx.update(model, jax.tree_util.tree_map_with_path(replace, state))
  return (model, meta) if with_meta else model
