"""ResNet-18 as Bi-Real Net and BONN binarise it.

BONN (seed §3.1.3) "binarize[s] the features and kernels in the backbone convolution
layers without convolution layers in shortcuts, following the settings and network
modifications in Bi-Real Net" (Liu et al. 2018): every 3×3 convolution gets its own
identity shortcut, so real-valued activations flow around each binary convolution,
and a downsampling shortcut is ``avg-pool 2×2/2 → 1×1 conv → BN`` in full precision.
XNOR-Net++ (§5.1) uses the same 18-layer, 4-stage topology with the pre-activation
basic block and a sign before each convolution.

One *unit* here is ``out = conv3x3(act(BN(x))) + shortcut(x)`` with ``act`` given by
the binary-input rule (:mod:`bnnjax.models.common`: ``BN → sign → binary conv`` for
binary-input specs, ``BN → ReLU → conv`` otherwise); a basic block is two units.

With ``reactnet=True`` a unit is ReActNet's Bi-Real block (Liu et al. 2020 §3.2; the
authors' ``resnet/*/birealnet.py`` ``BasicBlock``: ``move0 → BinaryActivation →
HardBinaryConv → bn1 → += residual → move1 → prelu → move2``; docs/reactnet.md), which
is post-activation: ``out = RPReLU(BN(conv3x3(sign(x + b))) + shortcut(x))``, RSign's
learned shift ``b`` as the only threshold of the sign (no batch norm between the unit
input and the sign), the batch norm after the conv, RPReLU after the residual sum.
"""

from __future__ import annotations

import jax
from flax import nnx

from bnnjax.models import common
from bnnjax.nn.layers import QuantConv
from bnnjax.nn.layers import QuantDense
from bnnjax.nn.layers import conv_output_size
from bnnjax.nn.reactnet import RPReLU
from bnnjax.nn.spec import FP
from bnnjax.nn.spec import QuantSpec

STEMS = ("imagenet", "small")
PAD1 = ((1, 1), (1, 1))  # 3×3 convs pad 1 on both sides (PyTorch's convention).


class Downsample(nnx.Module):
  """Bi-Real's full-precision downsampling shortcut: avg-pool 2×2/2, 1×1 conv, BN.

  The pool uses "SAME" padding (ceil mode, real pixels only), which equals the usual
  floor-mode 2×2/2 pool on even sizes and matches the 3×3/2 conv's output on odd ones
  (e.g. 7 → 4 on a 28×28 input).
  """

  def __init__(self, c_in: int, c_out: int, stride: int, *, input_size, rngs: nnx.Rngs):
    self.stride = stride
    hw = (common.pool_output_size(input_size, 2, 2, "SAME") if stride == 2
          else tuple(input_size))
    self.conv = QuantConv(c_in, c_out, 1, padding="VALID", spec=FP, input_size=hw,
                          rngs=rngs)
    self.norm = common.batch_norm(c_out, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    if self.stride == 2:
      x = common.pool(x, "avg", 2, 2, "SAME")
    return self.norm(self.conv(x), use_running_average=not train)


class BiRealUnit(nnx.Module):
  """``out = conv3x3(act(BN(x))) + shortcut(x)``, one binary conv with its shortcut.

  ``reactnet``: ReActNet's post-activation Bi-Real block,
  ``out = RPReLU(BN(conv3x3(x + b)) + shortcut(x))`` with the conv signing its input,
  i.e. ``sign(x + b)`` (RSign, ``shift``) for a binary-input spec; a
  full-precision-input spec has no sign and no shift (``conv → BN → + shortcut →
  RPReLU``). The shortcut sees the unshifted ``x``, so ``b`` moves the sign's
  threshold alone; ``preact`` is then None and ``norm`` is the batch norm after the
  conv.
  """

  def __init__(self, c_in: int, c_out: int, stride: int, spec: QuantSpec, *,
               input_size, reactnet: bool = False, rngs: nnx.Rngs):
    if stride not in (1, 2):
      raise ValueError(f"stride={stride!r}; allowed values are 1, 2.")
    if reactnet:
      self.preact = None
      self.shift = common.rsign_shift(c_in, spec)
    else:
      self.preact = common.PreAct(c_in, spec, rngs=rngs)
    self.conv = QuantConv(c_in, c_out, 3, strides=stride, padding=PAD1, spec=spec,
                          input_size=input_size, rngs=rngs)
    if reactnet:
      self.norm = common.batch_norm(c_out, rngs=rngs)
    self.shortcut = (Downsample(c_in, c_out, stride, input_size=input_size, rngs=rngs)
                     if stride != 1 or c_in != c_out else None)
    self.rprelu = RPReLU(c_out) if reactnet else None
    self.output_size = conv_output_size(input_size, (3, 3), (stride, stride), PAD1)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    s = x if self.shortcut is None else self.shortcut(x, train=train)
    if self.preact is not None:
      return self.conv(self.preact(x, train=train)) + s
    h = x if self.shift is None else self.shift(x)
    y = self.norm(self.conv(h), use_running_average=not train)
    return self.rprelu(y + s)


class BasicBlock(nnx.Module):
  """Two :class:`BiRealUnit` (the first may downsample)."""

  def __init__(self, c_in: int, c_out: int, stride: int, spec: QuantSpec, *,
               input_size, reactnet: bool = False, rngs: nnx.Rngs):
    self.unit1 = BiRealUnit(c_in, c_out, stride, spec, input_size=input_size,
                            reactnet=reactnet, rngs=rngs)
    self.unit2 = BiRealUnit(c_out, c_out, 1, spec, input_size=self.unit1.output_size,
                            reactnet=reactnet, rngs=rngs)
    self.output_size = self.unit2.output_size

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    return self.unit2(self.unit1(x, train=train), train=train)


class ResNet18(nnx.Module):
  """ResNet-18 (He et al. 2016) with Bi-Real shortcuts, as BONN and Bi-Real use it.

  Four stages of two basic blocks, ``(64, 128, 256, 512)·width/64`` channels, strides
  1, 2, 2, 2; every 3×3 conv is a :class:`BiRealUnit`. ``spec`` quantizes the 16
  block convs; the stem conv and the classifier are ``FP`` unless
  ``quantize_first``/``quantize_last``; shortcut 1×1 convs are always ``FP``.

  * ``stem="imagenet"``: 7×7/2 conv → BN → ReLU → 3×3/2 max-pool (pad 1).
  * ``stem="small"`` (CIFAR/MNIST): 3×3/1 conv → BN → ReLU.
  * head: BN → act → global average pool → *features* → dense. ``act`` follows the
    binary-input rule for the classifier's spec (ReLU when it is FP).

  When the stem conv binarises its input (``quantize_first`` with a binary-input
  spec) a batch norm is put before it (the rule; never a ReLU on the raw image).

  ``reactnet=True`` builds ReActNet's ResNet-18 (docs/reactnet.md): every unit is
  ReActNet's post-activation Bi-Real block (:class:`BiRealUnit`: ``RPReLU(BN(conv(
  sign(x + b))) + shortcut(x))``), and the stem drops its ReLU before binary-input
  units (``conv → BN (→ max-pool)``, the ReActNet code's stem; a ReLU there would
  make every first-unit sign +1 at ``b = 0``). The shortcuts and the head are
  unchanged; a binarised stem conv or classifier keeps its batch norm in front and
  gets RSign's shift after it (``BN → +b → sign``). With a full-precision-input spec
  (``fp``, ``bwn``, ``bw_cf``) there is no sign to shift: units are ``RPReLU(BN(conv(
  x)) + shortcut(x))`` and the stem keeps its ReLU.

  Args:
    num_classes: classifier outputs.
    input_shape: ``(H, W, C)`` of one example.
    spec: spec of the hidden convs.
    quantize_first: use ``spec`` for the stem conv too.
    quantize_last: use ``spec`` for the classifier too.
    rngs: ``nnx.Rngs`` (stream ``params``).
    width: stem / first-stage channels (64 in the paper; small for tests).
    stem: ``"imagenet"`` or ``"small"``; default ``"imagenet"`` if ``H >= 64``.
    reactnet: ReActNet's RSign and RPReLU (see above).
  """

  def __init__(self, *, num_classes: int, input_shape, spec: QuantSpec,
               quantize_first: bool = False, quantize_last: bool = False,
               rngs: nnx.Rngs, width: int = 64, stem: str | None = None,
               reactnet: bool = False):
    h, w, c = common.check_model_args(num_classes=num_classes, input_shape=input_shape,
                                      spec=spec)
    if not isinstance(width, int) or width < 1:
      raise ValueError(f"width={width!r}; allowed values are integers >= 1.")
    common.check_reactnet(reactnet)
    if stem is None:
      stem = "imagenet" if h >= 64 else "small"
    if stem not in STEMS:
      raise ValueError(f"stem={stem!r}; allowed values are {list(STEMS)}.")
    first, last = common.endpoint_specs(spec, quantize_first=quantize_first,
                                        quantize_last=quantize_last)
    self.stem = stem
    self.input_norm = common.first_layer_norm(first, c, rsign=reactnet, rngs=rngs)
    if stem == "imagenet":
      self.stem_conv = QuantConv(c, width, 7, strides=2, padding=((3, 3), (3, 3)),
                                 spec=first, input_size=(h, w), rngs=rngs)
      hw = conv_output_size((h, w), (7, 7), (2, 2), ((3, 3), (3, 3)))
      hw = common.pool_output_size(hw, 3, 2, 1)
    else:
      self.stem_conv = QuantConv(c, width, 3, padding=PAD1, spec=first,
                                 input_size=(h, w), rngs=rngs)
      hw = (h, w)
    hw = common.check_spatial(hw, input_shape, "the stem")
    self.stem_norm = common.batch_norm(width, rngs=rngs)
    # ReActNet's stem has no ReLU before the first sign (the binary-input rule).
    self.stem_relu = not (reactnet and spec.binary_input)
    blocks = []
    c_in = width
    for stage, stride in enumerate((1, 2, 2, 2)):
      c_out = width * 2**stage
      for b in range(2):
        block = BasicBlock(c_in, c_out, stride if b == 0 else 1, spec, input_size=hw,
                           reactnet=reactnet, rngs=rngs)
        hw = common.check_spatial(block.output_size, input_shape, f"stage {stage + 1}")
        blocks.append(block)
        c_in = c_out
    self.blocks = nnx.List(blocks)
    self.head = common.PreAct(c_in, last, rsign=reactnet, rngs=rngs)
    self.classifier = QuantDense(c_in, num_classes, spec=last, rngs=rngs)
    self.num_features = c_in

  def __call__(self, x: jax.Array, *, train: bool = False,
               return_features: bool = False):
    if self.input_norm is not None:
      x = self.input_norm(x, train=train)
    x = self.stem_conv(x)
    x = self.stem_norm(x, use_running_average=not train)
    if self.stem_relu:
      x = jax.nn.relu(x)
    if self.stem == "imagenet":
      x = common.pool(x, "max", 3, 2, 1)
    for block in self.blocks:
      x = block(x, train=train)
    features = common.global_average_pool(self.head(x, train=train))
    logits = self.classifier(features)
    return (logits, features) if return_features else logits
