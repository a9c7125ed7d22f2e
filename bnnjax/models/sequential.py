"""NIN, VGG-7 and AlexNet built from the cross-filter paper's layer strings.

One builder (:class:`LayerStringNet`) turns a layer string
(:mod:`bnnjax.models.layer_string`) into a sequential network; the three models are
that builder with the strings written verbatim below and the pool geometry each
paper gives.

Every weight layer but the first is preceded by :class:`~bnnjax.models.common.PreAct`
(``BN → ReLU`` for full-precision-input specs, ``BN`` alone before a layer that
binarises its input: the binary-input rule). Pools act on the layer outputs, before
the next ``PreAct`` (XNOR-Net's block order ``BN → sign → conv → pool``). Hidden
layers have no bias (a batch norm follows); the classifier has one. The last weight
layer is the classifier: its width (10 or 1000 in the papers) is replaced by
``num_classes``; a trailing ``Softmax`` item stands for a dense classifier.

With ``reactnet=True`` (docs/reactnet.md) every ``PreAct`` becomes ReActNet's: these
networks have no shortcuts, so the real-valued output of each layer goes through
RPReLU right after the batch norm that follows it (``BN → RPReLU → +b → sign → conv``
before a binary-input layer, with RSign's learned shift ``b``; ``BN → RPReLU → conv``
before a full-precision-input one, RPReLU in place of the ReLU). The shift is right
before the sign with no batch norm in between, as in ReActNet, but without a shortcut
the RPReLU output feeds that sign alone, so ``b`` adds to RPReLU's output shift ``ζ``:
it changes how the threshold trains, not what the network computes. No order of the
per-channel modules between two layers avoids that (ReActNet's post-activation ``conv
→ BN → RPReLU → pool → +b → sign`` has the same sum ``ζ + b``, up to the zero padding
of an average pool), so these networks keep
the pre-activation placement (docs/reactnet.md#what-the-shift-adds).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
from flax import nnx

from bnnjax.models import common
from bnnjax.models import layer_string as ls
from bnnjax.nn.layers import QuantConv
from bnnjax.nn.layers import QuantDense
from bnnjax.nn.layers import conv_output_size
from bnnjax.nn.spec import QuantSpec

# Cross-filter paper §5.2.1 (CIFAR-10), verbatim.
NIN_LAYERS = ("192-C5 + 160-C1 + 96-C1 + MP2 + 192-C5 + 2x(192-C1) + AP2 + 192-C3 + "
              "192-C1 + 10-C1 + AP1")
# The cross-filter paper (§5.2.2) gives no string for VGG-7; this is the one of the
# papers it compares with on CIFAR-10 (TWN, Li et al. 2016 §4; TBN, Wan et al. 2018),
# verbatim. MP2 is a 2×2/2 max-pool there.
VGG7_LAYERS = ("2×(128-C3) + MP2 + 2×(256-C3) + MP2 + 2×(512-C3) + MP2 + 1024-FC + "
               "Softmax")
# Cross-filter paper §5.2.3 (ImageNet), verbatim. It lists one max-pool only: taken
# literally, fc6 would see 27×27×256 features (0.76G weights), not AlexNet.
ALEXNET_PAPER_LAYERS = "96C11 + 256C5 + 2x(384C3) + 256C3 + MP2 + 2x(L4096) + L1000"
# What AlexNet is (Krizhevsky et al. 2012 §3.5; XNOR-Net and XNOR-Net++ §5.1): the
# paper's string with the max-pools after conv1 and conv2 that it leaves out. Default.
ALEXNET_LAYERS = ("96C11 + MP2 + 256C5 + MP2 + 2x(384C3) + 256C3 + MP2 + 2x(L4096) + "
                  "L1000")


@dataclasses.dataclass(frozen=True)
class PoolGeometry:
  """Window, stride and symmetric padding of a named pool; ``window=None``: global."""

  window: int | None
  stride: int = 1
  padding: int = 0


GLOBAL = PoolGeometry(None)


class _ConvOp(nnx.Module):

  def __init__(self, pre, conv: QuantConv):
    self.pre, self.conv = pre, conv

  def __call__(self, x, *, train):
    if self.pre is not None:
      x = self.pre(x, train=train)
    return self.conv(x), x


class _DenseOp(nnx.Module):

  def __init__(self, pre, dense: QuantDense, flatten: bool):
    self.pre, self.dense, self.flatten = pre, dense, flatten

  def __call__(self, x, *, train):
    if self.flatten:
      x = x.reshape(x.shape[0], -1)
    if self.pre is not None:
      x = self.pre(x, train=train)
    return self.dense(x), x


class _PoolOp(nnx.Module):

  def __init__(self, kind: str, geometry: PoolGeometry):
    self.kind, self.geometry = kind, geometry

  def __call__(self, x, *, train):
    del train
    g = self.geometry
    if g.window is None:
      return common.global_average_pool(x) if self.kind == "avg" else x.max((1, 2)), x
    return common.pool(x, self.kind, g.window, g.stride, g.padding), x


def _scaled(n: int, width_mult: float) -> int:
  return max(1, int(round(n * width_mult)))


class LayerStringNet(nnx.Module):
  """A sequential network built from a layer string (see module docstring).

  Args:
    layers: the layer string.
    pools: geometry of each pool name used in ``layers`` (``GLOBAL`` = global pool).
    num_classes: classifier outputs (replaces the string's last width).
    input_shape: ``(H, W, C)`` of one example.
    spec: spec of the hidden layers.
    quantize_first: use ``spec`` for the first layer too (else ``FP``).
    quantize_last: use ``spec`` for the classifier too (else ``FP``).
    rngs: ``nnx.Rngs`` (``params``; ``dropout`` when ``dropout > 0``).
    width_mult: multiplies every hidden width (rounded, at least 1).
    dropout: rate on the outputs of hidden dense layers (i.e. at the input of every
      dense layer that follows a dense layer), as Krizhevsky et al. 2012 do.
    first_stride: stride of the first conv.
    first_padding: symmetric padding of the first conv (default ``(k - 1) // 2``).
    reactnet: ReActNet's RSign and RPReLU in every ``PreAct`` (module docstring), and
      RSign's shift before a binarised first layer.

  Calling the model returns logits ``(N, num_classes)``, or ``(logits, features)`` with
  ``features`` the (pre-activated) input of the classifier, global-average-pooled when
  the classifier is a conv (NIN's 10-C1: for a full-precision-input classifier, a 1×1
  conv followed by a global average pool is exactly a dense layer on these pooled
  features; a binary-input one signs each position before pooling instead).
  """

  def __init__(self, layers: str, *, pools: Mapping[str, PoolGeometry],
               num_classes: int, input_shape, spec: QuantSpec,
               quantize_first: bool = False, quantize_last: bool = False,
               rngs: nnx.Rngs, width_mult: float = 1.0, dropout: float = 0.0,
               first_stride: int = 1, first_padding: int | None = None,
               reactnet: bool = False):
    h, w, c = common.check_model_args(num_classes=num_classes, input_shape=input_shape,
                                      spec=spec)
    common.check_reactnet(reactnet)
    if not width_mult > 0:
      raise ValueError(f"width_mult={width_mult!r}; allowed values are > 0.")
    parsed = list(ls.parse_layers(layers))
    if any(isinstance(l, ls.Softmax) for l in parsed[:-1]):
      raise ValueError(f"'Softmax' must be the last item of layers={layers!r}.")
    if parsed and isinstance(parsed[-1], ls.Softmax):
      parsed[-1] = ls.Dense(num_classes)
    weights = [i for i, l in enumerate(parsed) if isinstance(l, (ls.Conv, ls.Dense))]
    if not weights:
      raise ValueError(f"layers={layers!r} has no conv or dense layer.")
    first_i, last_i = weights[0], weights[-1]
    first, last = common.endpoint_specs(spec, quantize_first=quantize_first,
                                        quantize_last=quantize_last)
    hw, flat, prev_dense = (h, w), False, False
    ops = []
    for i, layer in enumerate(parsed):
      layer_spec = first if i == first_i else last if i == last_i else spec
      if isinstance(layer, ls.Pool):
        if layer.name not in pools:
          raise ValueError(f"Pool {layer.name!r} in layers={layers!r} has no geometry; "
                           f"this model defines {sorted(pools)}.")
        if flat:
          raise ValueError(f"{layer.name} after a dense layer in layers={layers!r}.")
        g = pools[layer.name]
        ops.append(_PoolOp(layer.kind, g))
        if g.window is None:
          flat = True
        else:
          hw = common.check_spatial(
              common.pool_output_size(hw, g.window, g.stride, g.padding), input_shape,
              f"{layer.name} (layer {i + 1} of the expanded layer string)")
        continue
      if i == last_i:
        classifier_index = len(ops)
      if isinstance(layer, ls.Conv):
        if flat:
          raise ValueError(f"A conv after a dense layer or global pool in "
                           f"layers={layers!r}.")
        k = layer.kernel
        stride = first_stride if i == first_i else 1
        pad = (first_padding if (i == first_i and first_padding is not None)
               else (k - 1) // 2)
        out = num_classes if i == last_i else _scaled(layer.filters, width_mult)
        pre = (common.first_layer_norm(layer_spec, c, rsign=reactnet, rngs=rngs)
               if i == first_i else
               common.PreAct(c, layer_spec, rsign=reactnet, rprelu=reactnet, rngs=rngs))
        pads = ((pad, pad), (pad, pad))
        conv = QuantConv(c, out, k, strides=stride, padding=pads, spec=layer_spec,
                         use_bias=i == last_i, input_size=hw, rngs=rngs)
        ops.append(_ConvOp(pre, conv))
        hw = common.check_spatial(conv_output_size(hw, (k, k), (stride, stride), pads),
                                  input_shape,
                                  f"{layer.filters}-C{k} (layer {i + 1} of the expanded "
                                  "layer string)")
        c, prev_dense = out, False
      else:
        d_in = c if flat else hw[0] * hw[1] * c
        out = num_classes if i == last_i else _scaled(layer.units, width_mult)
        if i == first_i:
          pre = common.first_layer_norm(layer_spec, d_in, rsign=reactnet, rngs=rngs)
        else:
          pre = common.PreAct(d_in, layer_spec, dropout=dropout if prev_dense else 0.0,
                              rsign=reactnet, rprelu=reactnet, rngs=rngs)
        dense = QuantDense(d_in, out, spec=layer_spec, use_bias=i == last_i, rngs=rngs)
        ops.append(_DenseOp(pre, dense, flatten=not flat))
        c, flat, prev_dense = out, True, True
    if not flat:
      raise ValueError(
          f"layers={layers!r} ends with a {hw} feature map: end it with a dense layer "
          "or a global pool so the model outputs (N, num_classes).")
    self.ops = nnx.List(ops)
    self.classifier_index = classifier_index
    self.layers = layers

  def __call__(self, x: jax.Array, *, train: bool = False,
               return_features: bool = False):
    features = None
    for i, op in enumerate(self.ops):
      x, op_input = op(x, train=train)
      if i == self.classifier_index:
        features = op_input if op_input.ndim == 2 else common.global_average_pool(op_input)
    return (x, features) if return_features else x


class NIN(LayerStringNet):
  """Network in Network (Lin et al. 2013) as the cross-filter paper uses it (§5.2.1).

  ``"192-C5 + 160-C1 + 96-C1 + MP2 + 192-C5 + 2x(192-C1) + AP2 + 192-C3 + 192-C1 +
  10-C1 + AP1"``: MP2/AP2 are 3×3 pools with stride 2 and padding 1; AP1 (8×8 average
  pool on 32×32 CIFAR) is a global average pool here, so other input sizes work
  (MNIST 28×28: 28 → 14 → 7 → global). The first (192-C5) and last (10-C1, width
  ``num_classes``) convs are FP unless ``quantize_first``/``quantize_last`` (§6.3).
  ``features`` = the input of the last conv, global-average-pooled (a 1×1 conv then a
  global average pool equals a dense layer on it).

  Args: as :class:`LayerStringNet`; ``width_mult`` scales the hidden widths,
  ``layers`` replaces the string.
  """

  def __init__(self, *, num_classes: int, input_shape, spec: QuantSpec,
               quantize_first: bool = False, quantize_last: bool = False,
               rngs: nnx.Rngs, width_mult: float = 1.0, layers: str = NIN_LAYERS,
               reactnet: bool = False):
    super().__init__(
        layers, pools={"MP2": PoolGeometry(3, 2, 1), "AP2": PoolGeometry(3, 2, 1),
                       "AP1": GLOBAL},
        num_classes=num_classes, input_shape=input_shape, spec=spec,
        quantize_first=quantize_first, quantize_last=quantize_last, rngs=rngs,
        width_mult=width_mult, reactnet=reactnet)


class VGG7(LayerStringNet):
  """VGG-7 of TWN/TBN, which the cross-filter paper uses on CIFAR-10 (§5.2.2).

  ``"2×(128-C3) + MP2 + 2×(256-C3) + MP2 + 2×(512-C3) + MP2 + 1024-FC + Softmax"``
  (Li et al. 2016; Wan et al. 2018): six 3×3 convs (pad 1), 2×2/2 max-pools, a hidden
  dense layer of 1024 units and the classifier dense (``Softmax``). On 32×32 inputs
  the flattened features are 4×4×512; 28×28 inputs give 3×3×512. The first conv and
  the classifier are FP unless ``quantize_first``/``quantize_last``.

  Args: as :class:`LayerStringNet`; ``dropout`` (default 0) acts on the 1024-FC
  output.
  """

  def __init__(self, *, num_classes: int, input_shape, spec: QuantSpec,
               quantize_first: bool = False, quantize_last: bool = False,
               rngs: nnx.Rngs, width_mult: float = 1.0, dropout: float = 0.0,
               layers: str = VGG7_LAYERS, reactnet: bool = False):
    super().__init__(
        layers, pools={"MP2": PoolGeometry(2, 2, 0)}, num_classes=num_classes,
        input_shape=input_shape, spec=spec, quantize_first=quantize_first,
        quantize_last=quantize_last, rngs=rngs, width_mult=width_mult, dropout=dropout,
        reactnet=reactnet)


class AlexNet(LayerStringNet):
  """AlexNet (Krizhevsky et al. 2012) as the cross-filter paper (§5.2.3) and XNOR-Net++
  (§5.1) binarise it: local response normalisation replaced by batch norm before each
  layer, dropout 0.5 on both hidden dense layers.

  Layer string (default ``ALEXNET_LAYERS``): the paper's ``"96C11 + 256C5 + 2x(384C3)
  + 256C3 + MP2 + 2x(L4096) + L1000"`` with Krizhevsky's max-pools after conv1 and
  conv2, which the paper's string omits (pass ``layers=ALEXNET_PAPER_LAYERS`` for the
  literal one). MP2 is a 3×3/2 max-pool without padding (overlapping pooling).

  Geometry: C11 has stride 4 and no padding, so a 227×227 input gives Krizhevsky's
  55 → 27 → 13 → 6 maps (224×224: 54 → 26 → 12 → 5); 5×5 and 3×3 convs pad 2 and 1.
  Small inputs (``min(H, W) < 96``, e.g. CIFAR/MNIST or 64×64 ImageNet) would (nearly)
  vanish after C11/4 and three pools (C11/4 needs ``H >= 67`` to leave a 1×1 map), so
  there the C11 conv has stride 1 and padding 5 (32 → 32 → 15 → 7 → 3; 28 → 28 → 13 →
  6 → 2; 64 → 64 → 31 → 15 → 7); ``first_stride`` overrides the choice. Inputs still
  too small raise a ValueError naming ``input_shape``.

  ``features`` is the input of L1000: BN → ReLU → dropout of fc7's output (so it is
  dropped out in train mode, like what the classifier sees).

  Args: as :class:`LayerStringNet`.
  """

  def __init__(self, *, num_classes: int, input_shape, spec: QuantSpec,
               quantize_first: bool = False, quantize_last: bool = False,
               rngs: nnx.Rngs, width_mult: float = 1.0, dropout: float = 0.5,
               first_stride: int | None = None, layers: str = ALEXNET_LAYERS,
               reactnet: bool = False):
    if first_stride is None:
      first_stride = 4 if min(tuple(input_shape)[:2]) >= 96 else 1
    if first_stride not in (1, 4):
      raise ValueError(f"first_stride={first_stride!r}; allowed values are 1, 4.")
    super().__init__(
        layers, pools={"MP2": PoolGeometry(3, 2, 0)}, num_classes=num_classes,
        input_shape=input_shape, spec=spec, quantize_first=quantize_first,
        quantize_last=quantize_last, rngs=rngs, width_mult=width_mult, dropout=dropout,
        first_stride=first_stride, first_padding=0 if first_stride == 4 else None,
        reactnet=reactnet)
