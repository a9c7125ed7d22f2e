"""Packed inference: a trained ResNet-18 as 1-bit weights run by the XNOR kernels.

:func:`pack_model` turns a trained :class:`~bnnjax.models.ResNet18` (eval mode) into a
:class:`PackedModel`: a flat dict of numpy arrays plus a JSON description of the
network, which :func:`save` writes to one ``.npz`` file and :func:`load` reads back.
Calling a :class:`PackedModel` runs it with :mod:`bnnjax.kernels`.

What each layer becomes (``QuantConv``/``QuantDense`` by their spec, SPEC §2-5, §7):

* **binary input and kernel** (XNOR, XNOR-CF, XNOR-Net++, BONN): the kernel's signs as
  ``uint32`` words; the folded weight scale (``layer.folded_scale()``) and the bias as
  float32. The batch norm before the sign is folded into a per-channel threshold:
  ``sign(BN(x)) = +1 ⟺ σ_c·x >= τ_c`` with ``σ_c = sign(γ_c)`` (BN is monotone in
  ``x`` per channel). ``τ_c`` is found by bisection over the float32 numbers, on the
  batch norm's own float arithmetic, so the bits equal those of the training model's
  ``sign(BN(x))`` (not merely up to rounding). XNOR's activation scale ``K`` needs
  ``|BN(x)|``, so with ``K`` that batch norm is also kept, as one affine map.
  The ±1 product runs as :func:`bnnjax.kernels.binary_conv_packed` (pad value +1 or 0
  with its correction, as in the layer's spec) or the packed dense product.
* **binary kernel, float input** (BWN, BW-CF): the kernel's signs as words, unpacked
  to ±1 at run time for a float conv (1-bit storage; the product is not XNOR).
* **full precision** (stem, shortcuts, classifier by default): float32; a batch norm
  right after the conv (stem, downsampling shortcut) is folded into its kernel and bias
  (``W·γ/σ``, ``β − μγ/σ``), exact up to float rounding.

On disk the sign bits of a ``(kh, kw, c_in, c_out)`` kernel are one stream of
``kh·kw·c_in·c_out`` bits in ``uint32`` words (32× smaller than float32 up to the
last word); :func:`load` re-packs them along ``c_in`` for the kernels.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from bnnjax import kernels
from bnnjax.models import common
from bnnjax.models.resnet import ResNet18
from bnnjax.nn.layers import QuantConv
from bnnjax.nn.layers import QuantDense
from bnnjax.quant import scales

FORMAT = "bnnjax.packed/1"
META_KEY = "__meta__"


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


# --------------------------------------------------------------------- batch norm folds
def _bn_arrays(bn: nnx.BatchNorm) -> dict[str, np.ndarray]:
  return {"mean": np.asarray(bn.mean[...], np.float32),
          "var": np.asarray(bn.var[...], np.float32),
          "scale": np.asarray(bn.scale[...], np.float32),
          "bias": np.asarray(bn.bias[...], np.float32),
          "epsilon": np.asarray(bn.epsilon, np.float32)}


def _bn_apply(x, p):
  """nnx.BatchNorm's eval arithmetic: ``(x − μ)·(rsqrt(var + ε)·γ) + β``."""
  mul = lax.rsqrt(p["var"] + p["epsilon"]) * p["scale"]
  return (x - p["mean"]) * mul + p["bias"]


@jax.jit
def _bn_nonnegative(u, sigma, p):
  return _bn_apply(u * sigma, p) >= 0


_ORDERED_MAX = np.int64(np.float32(np.finfo(np.float32).max).view(np.int32))


def _to_float(o: np.ndarray) -> np.ndarray:
  """Ordered integer → float32 (inverse of the monotone map used in bisection)."""
  o = np.asarray(o, np.int64)
  bits = np.where(o >= 0, o, (-o) | 0x80000000).astype(np.uint32)
  return bits.view(np.float32)


def sign_threshold(bn: nnx.BatchNorm) -> tuple[np.ndarray, np.ndarray]:
  """``(σ, τ)`` per channel with ``sign(BN(x)) = +1 ⟺ σ·x >= τ`` for every float32 ``x``.

  ``BN(x)`` is non-decreasing in ``x`` when ``γ·rsqrt(var+ε) >= 0`` (``σ = +1``) and
  non-increasing otherwise (``σ = −1``, then ``BN(σ·u)`` is non-decreasing in ``u``);
  float rounding keeps this monotonicity. ``τ`` is the smallest float32 ``u`` with
  ``BN(σ·u) >= 0``, found by bisection on the ordered float32 bit patterns with BN's
  own jitted arithmetic; ``τ = −inf`` (``+inf``) when every (no) finite input gives +1.
  """
  p = {k: jnp.asarray(v) for k, v in _bn_arrays(bn).items()}
  mul = np.asarray(lax.rsqrt(p["var"] + p["epsilon"]) * p["scale"])
  sigma = np.where(mul < 0, -1.0, 1.0).astype(np.float32)
  f = functools.partial(_bn_nonnegative, sigma=jnp.asarray(sigma), p=p)
  c = sigma.shape[0]
  lo = np.full(c, -_ORDERED_MAX)
  hi = np.full(c, _ORDERED_MAX)
  always = np.asarray(f(_to_float(lo)))
  never = ~np.asarray(f(_to_float(hi)))
  for _ in range(34):  # invariant f(lo) < 0 <= f(hi); 2^33 > the ordered range
    mid = (lo + hi) // 2
    ok = np.asarray(f(_to_float(mid)))
    hi = np.where(ok, mid, hi)
    lo = np.where(ok, lo, mid)
  tau = _to_float(hi)
  tau = np.where(always, -np.inf, np.where(never, np.inf, tau)).astype(np.float32)
  return sigma, tau


# --------------------------------------------------------------------------- layers
def _layer_kind(layer) -> str:
  spec = layer.spec
  if spec.binary_input and spec.binary_kernel:
    return "xnor"
  if spec.binary_kernel:
    return "binary_weight"
  if spec.binary_input:
    return "binary_input"
  return "float"


def _geometry(layer) -> dict[str, Any]:
  if isinstance(layer, QuantDense):
    return {"op": "dense", "in_features": layer.in_features,
            "out_features": layer.out_features}
  return {"op": "conv", "in_features": layer.in_features,
          "out_features": layer.out_features, "kernel_size": list(layer.kernel_size),
          "strides": list(layer.strides),
          "padding": layer.padding if isinstance(layer.padding, str)
          else [list(p) for p in layer.padding],
          "pad_value": float(layer.spec.pad_value)}


def _export_layer(layer, pre_bn: nnx.BatchNorm | None, pre_act: str,
                  post_bn: nnx.BatchNorm | None = None):
  """One layer's ``(meta, arrays)``.

  Args:
    layer: a ``QuantConv`` or ``QuantDense``.
    pre_bn: the batch norm feeding it (or None).
    pre_act: ``"identity"`` or ``"relu"`` after ``pre_bn``.
    post_bn: a batch norm right after the layer, folded into a float layer's kernel.
  """
  kind = _layer_kind(layer)
  spec = layer.spec
  meta = {"kind": kind, **_geometry(layer), "pre_act": pre_act,
          "activation_scale": bool(spec.activation_scale), "pre_bn": False,
          "threshold": False}
  arrays: dict[str, np.ndarray] = {}
  w = np.asarray(layer.kernel[...], np.float32)
  bias = None if layer.bias is None else np.asarray(layer.bias[...], np.float32)
  if not spec.binary_kernel:  # "float" and "binary_input" keep a float kernel
    if post_bn is not None:
      p = _bn_arrays(post_bn)
      mul = (p["scale"] / np.sqrt(p["var"] + p["epsilon"])).astype(np.float32)
      w = w * mul
      bias = (p["bias"] - p["mean"] * mul + (0 if bias is None else bias * mul))
      bias = bias.astype(np.float32)
      post_bn = None
    arrays["kernel"] = w
  else:
    if spec.binary_input and pre_act != "identity":
      raise ValueError("A binary-input layer must follow BN without ReLU (the "
                       "binary-input rule).")
    arrays["kernel_bits"] = pack_sign_stream(w)
    meta["kernel_shape"] = list(w.shape)
    s = layer.folded_scale()
    if s is not None:
      arrays["scale"] = np.asarray(s, np.float32)
  if bias is not None:
    arrays["bias"] = bias
  if pre_bn is not None:
    if kind in ("xnor", "binary_input"):
      sigma, arrays["sign_tau"] = sign_threshold(pre_bn)
      arrays["sign_sigma"] = sigma.astype(np.int8)
      meta["threshold"] = True
      if spec.activation_scale:
        # K only scales the output: BN as one affine map x·a + b (float rounding of
        # the fold changes K in the last bits, never a sign).
        p = _bn_arrays(pre_bn)
        a = (p["scale"] / np.sqrt(p["var"] + p["epsilon"])).astype(np.float32)
        arrays["k_bn_a"], arrays["k_bn_b"] = a, (p["bias"] - p["mean"] * a).astype(
            np.float32)
    else:
      arrays.update({f"pre_bn_{k}": v for k, v in _bn_arrays(pre_bn).items()})
      meta["pre_bn"] = True
  if post_bn is not None:
    arrays.update({f"post_bn_{k}": v for k, v in _bn_arrays(post_bn).items()})
  meta["post_bn"] = post_bn is not None
  return meta, arrays


# -------------------------------------------------------------------------- export
def pack_model(model: ResNet18) -> "PackedModel":
  """The packed form of a trained ResNet-18 (eval mode: running BN statistics)."""
  if not isinstance(model, ResNet18):
    raise TypeError(f"pack_model packs a bnnjax.models.ResNet18, got "
                    f"{type(model).__name__}.")
  layers, arrays = {}, {}

  def add(name, meta_arrays):
    meta, arr = meta_arrays
    layers[name] = meta
    arrays.update({f"{name}/{k}": v for k, v in arr.items()})

  input_bn = model.input_norm.norm if model.input_norm is not None else None
  stem_fp = _layer_kind(model.stem_conv) == "float"
  add("stem", _export_layer(model.stem_conv, input_bn, "identity",
                            post_bn=model.stem_norm))
  units = []
  for b, block in enumerate(model.blocks):
    for u, unit in enumerate((block.unit1, block.unit2)):
      name = f"block{b}_unit{u + 1}"
      act = "identity" if unit.preact.binary_input else "relu"
      add(name, _export_layer(unit.conv, unit.preact.norm, act))
      shortcut = None
      if unit.shortcut is not None:
        shortcut = f"{name}_shortcut"
        add(shortcut, _export_layer(unit.shortcut.conv, None, "identity",
                                    post_bn=unit.shortcut.norm))
        layers[shortcut]["avg_pool"] = unit.shortcut.stride == 2
      units.append({"conv": name, "shortcut": shortcut})
  # The head's BN (→ ReLU) comes before the global average pool, so it stays a float
  # op; a binary classifier then takes sign of the pooled features.
  arrays.update({f"head/bn_{k}": v for k, v in _bn_arrays(model.head.norm).items()})
  head_act = "identity" if model.head.binary_input else "relu"
  add("classifier", _export_layer(model.classifier, None, "identity"))
  meta = {"format": FORMAT, "model": "resnet18", "stem": model.stem,
          "stem_folded": stem_fp, "units": units, "head_act": head_act,
          "layers": layers}
  return PackedModel(meta, arrays)


# ---------------------------------------------------------------------------- running
def _input_bits(x, arr, meta):
  """Bits of the layer's binary input: the folded threshold or ``x >= 0``."""
  if meta["threshold"]:
    return x * arr["sign_sigma"].astype(x.dtype) >= arr["sign_tau"]
  return x >= 0


def _pre(x, arr, meta):
  """Float input side: BN (+ ReLU) when kept."""
  if meta["pre_bn"]:
    x = _bn_apply(x, {k[7:]: v for k, v in arr.items() if k.startswith("pre_bn_")})
  if meta["pre_act"] == "relu":
    x = jax.nn.relu(x)
  return x


def _run_layer(x, arr, meta, implementation):
  conv = meta["op"] == "conv"
  kind = meta["kind"]
  if conv:
    ks, strides = tuple(meta["kernel_size"]), tuple(meta["strides"])
    padding = meta["padding"] if isinstance(meta["padding"], str) else tuple(
        tuple(p) for p in meta["padding"])
    pads = kernels.reference.conv_pads(padding, ks, strides, x.shape[1:3])
  k_map = None
  if kind in ("xnor", "binary_input"):
    bits = _input_bits(x, arr, meta)
    if meta["activation_scale"]:
      xf = x * arr["k_bn_a"] + arr["k_bn_b"] if "k_bn_a" in arr else x
      k_map = (scales.activation_scale(xf, ks, strides, pads) if conv
               else scales.dense_activation_scale(xf))
    if kind == "xnor":
      if conv:
        y = kernels.binary_conv_packed(
            kernels.pack_bits(bits, axis=-1), arr["kernel_words"],
            in_features=meta["in_features"], strides=strides, padding=pads,
            pad_value=meta["pad_value"], implementation=implementation)
      else:
        lead = bits.shape[:-1]
        y = kernels.xnor_matmul(kernels.pack_bits(bits.reshape(-1, bits.shape[-1]), 1),
                                arr["kernel_words"], meta["in_features"],
                                implementation=implementation).reshape(*lead, -1)
      y = y.astype(jnp.float32)
    else:  # binary input, float kernel: ±1 float input
      xq = jnp.where(bits, 1.0, -1.0).astype(jnp.float32)
      y = _float_op(xq, arr["kernel"], meta, pads if conv else None)
  else:
    xf = _pre(x, arr, meta)
    kernel = arr["kernel"] if kind == "float" else arr["kernel_pm1"]
    y = _float_op(xf, kernel, meta, pads if conv else None)
  if k_map is not None:
    y = y * k_map
  if "scale" in arr:
    s = arr["scale"]
    if not conv and s.ndim == 3:
      s = s.reshape(-1)
    y = y * s
  if "bias" in arr:
    y = y + arr["bias"]
  if meta["post_bn"]:
    y = _bn_apply(y, {k[8:]: v for k, v in arr.items() if k.startswith("post_bn_")})
  return y


def _float_op(x, kernel, meta, pads):
  if meta["op"] == "dense":
    return jnp.dot(x, kernel)
  if meta["kind"] == "binary_input" and meta["pad_value"] == 1.0:
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=1)
    pads = ((0, 0), (0, 0))
  return lax.conv_general_dilated(x, kernel, tuple(meta["strides"]), pads,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _forward(meta, arrays, x, implementation):
  def layer(name, h):
    prefix = name + "/"
    arr = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    return _run_layer(h, arr, meta["layers"][name], implementation)

  x = layer("stem", x)
  x = jax.nn.relu(x)
  if meta["stem"] == "imagenet":
    x = common.pool(x, "max", 3, 2, 1)
  for unit in meta["units"]:
    y = layer(unit["conv"], x)
    if unit["shortcut"] is None:
      s = x
    else:
      s = x
      if meta["layers"][unit["shortcut"]].get("avg_pool"):
        s = common.pool(s, "avg", 2, 2, "SAME")
      s = layer(unit["shortcut"], s)
    x = y + s
  x = _bn_apply(x, {k[8:]: v for k, v in arrays.items() if k.startswith("head/bn_")})
  if meta["head_act"] == "relu":
    x = jax.nn.relu(x)
  return layer("classifier", jnp.mean(x, axis=(1, 2)))


class PackedModel:
  """A packed network: ``meta`` (JSON-able description) and ``arrays`` (numpy, as
  stored). Call it on NHWC images for logits; ``implementation`` picks the kernels."""

  def __init__(self, meta: dict, arrays: dict[str, np.ndarray]):
    if meta.get("format") != FORMAT:
      raise ValueError(f"Not a packed model of format {FORMAT!r}: {meta.get('format')!r}.")
    self.meta = meta
    self.arrays = arrays
    self._device = self._prepare()
    self._fns = {}

  def _prepare(self) -> dict[str, jax.Array]:
    """Device arrays in run layout: kernel bits re-packed along ``c_in``."""
    out = {}
    for key, v in self.arrays.items():
      name, field = key.rsplit("/", 1)
      meta = self.meta["layers"].get(name)
      if field == "kernel_bits":
        bits = unpack_sign_stream(v, meta["kernel_shape"])
        if meta["kind"] == "xnor":
          axis = 2 if meta["op"] == "conv" else 0
          out[f"{name}/kernel_words"] = kernels.pack_bits(bits, axis=axis)
        else:
          out[f"{name}/kernel_pm1"] = jnp.asarray(np.where(bits, 1.0, -1.0), jnp.float32)
      else:
        out[key] = jnp.asarray(v)
    return out

  def __call__(self, x: jax.Array, *, implementation=None) -> jax.Array:
    key = kernels.api.resolve(implementation)
    if key not in self._fns:
      self._fns[key] = jax.jit(functools.partial(_forward, self.meta,
                                                 implementation=key))
    return self._fns[key](self._device, jnp.asarray(x, jnp.float32))

  def layer_sizes(self) -> dict[str, dict[str, int]]:
    """Per layer: ``packed`` bytes stored (all its arrays) and ``kernel_bits`` bytes,
    against ``float32_kernel`` bytes of the float kernel."""
    sizes = {}
    for name, meta in self.meta["layers"].items():
      arr = {k.split("/", 1)[1]: v for k, v in self.arrays.items()
             if k.startswith(name + "/")}
      shape = meta.get("kernel_shape") or list(arr["kernel"].shape)
      sizes[name] = {
          "kind": meta["kind"],
          "float32_kernel": 4 * int(np.prod(shape)),
          "kernel_bits": int(arr["kernel_bits"].nbytes) if "kernel_bits" in arr else 0,
          "packed": int(sum(v.nbytes for v in arr.values())),
      }
    return sizes


def save(packed: PackedModel, path: str) -> str:
  """Writes ``packed`` to ``path`` (one uncompressed ``.npz``); returns the path."""
  if not path.endswith(".npz"):
    path += ".npz"
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  meta = np.frombuffer(json.dumps(packed.meta).encode(), np.uint8)
  np.savez(path, **{META_KEY: meta}, **packed.arrays)
  return path


def load(path: str) -> PackedModel:
  """Reads a :class:`PackedModel` written by :func:`save`."""
  with np.load(path, allow_pickle=False) as f:
    if META_KEY not in f:
      raise ValueError(f"{path} is not a packed model (no {META_KEY} entry).")
    meta = json.loads(bytes(f[META_KEY]).decode())
    arrays = {k: f[k] for k in f.files if k != META_KEY}
  return PackedModel(meta, arrays)


def float32_size(model: nnx.Module) -> int:
  """Bytes of all the model's parameters and batch statistics as float32."""
  leaves = jax.tree.leaves(nnx.state(model))
  return int(sum(4 * np.size(v) for v in leaves))
