"""Wide residual networks (Zagoruyko & Komodakis 2016) as BONN uses them on CIFAR.

BONN (seed §3.1.2, Table 3) uses WRN-22 with widening factor 1 and "kernel stages"
``16-16-32-64`` (0.27M parameters) and ``64-64-128-256`` (4.33M, with dropout 0.3):
the stem width first, then the widths of the three stages. Depth 22 means
``(22 - 4) / 6 = 3`` pre-activation basic blocks per stage.

With ``reactnet=True`` (docs/reactnet.md) a block follows ReActNet's post-activation
order (Liu et al. 2020 §3.2 and the authors' code): each binary conv signs ``x + b``
with RSign's learned shift and no batch norm in between, a batch norm follows each
conv, and RPReLU acts on each conv's real-valued output: after the first conv's batch
norm (it has no shortcut of its own) and after the residual sum.
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

PAD1 = ((1, 1), (1, 1))


class WideBasicBlock(nnx.Module):
  """Pre-activation basic block: ``conv3x3(act(BN(conv3x3(act(BN(x)))))) + shortcut``.

  Dropout (if any) sits between the two convs (WRN's ``BN-ReLU-dropout-conv``, placed
  before the BN for binary-input specs, see :class:`~bnnjax.models.common.PreAct`).
  When the shape changes the shortcut is a full-precision 1×1 conv (stride ``s``)
  applied to the pre-activated input, as in the WRN reference code; otherwise it is
  the identity.

  ``reactnet``: ReActNet's post-activation order,

  ``h = dropout(RPReLU₁(BN₁(conv1(x + b₁))))``,
  ``out = RPReLU(BN₂(conv2(h + b₂)) + shortcut(x))``,

  the convs signing their inputs, so ``sign(x + b₁)`` and ``sign(h + b₂)`` with RSign's
  shifts (binary-input specs; a full-precision-input spec has no sign and no shift).
  The shortcut is then ``BN(conv1x1/s(x))`` of the unshifted block input when the
  shape changes (both summands batch-normalised, as ReActNet's and ResNet's
  post-activation shortcuts), else the identity. The first conv has no shortcut of its
  own, so ``b₂`` meets ``h`` only: at eval it adds to RPReLU₁'s output shift ``ζ``
  (docs/reactnet.md#what-the-shift-adds); ``b₁`` is the sign's threshold alone.
  Dropout sits on ``h`` right before ``+ b₂`` (for binary input, as in :class:`PreAct`,
  before the per-channel affine map that precedes the sign). ``preact1``/``preact2``
  are then None.
  """

  def __init__(self, c_in: int, c_out: int, stride: int, spec: QuantSpec, *,
               dropout: float, input_size, reactnet: bool = False, rngs: nnx.Rngs):
    mid = conv_output_size(input_size, (3, 3), (stride, stride), PAD1)
    self.output_size = mid
    self.reactnet = reactnet
    if reactnet:
      self._init_reactnet(c_in, c_out, stride, spec, dropout=dropout,
                          input_size=input_size, rngs=rngs)
      return
    self.preact1 = common.PreAct(c_in, spec, rngs=rngs)
    self.conv1 = QuantConv(c_in, c_out, 3, strides=stride, padding=PAD1, spec=spec,
                           input_size=input_size, rngs=rngs)
    self.preact2 = common.PreAct(c_out, spec, dropout=dropout, rngs=rngs)
    self.conv2 = QuantConv(c_out, c_out, 3, padding=PAD1, spec=spec, input_size=mid,
                           rngs=rngs)
    self.shortcut = (QuantConv(c_in, c_out, 1, strides=stride, padding="VALID", spec=FP,
                               input_size=input_size, rngs=rngs)
                     if stride != 1 or c_in != c_out else None)
    self.rprelu = None

  def _init_reactnet(self, c_in, c_out, stride, spec, *, dropout, input_size, rngs):
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout={dropout!r}; allowed values are 0 <= dropout < 1.")
    self.preact1 = self.preact2 = None
    self.shift1 = common.rsign_shift(c_in, spec)
    self.conv1 = QuantConv(c_in, c_out, 3, strides=stride, padding=PAD1, spec=spec,
                           input_size=input_size, rngs=rngs)
    self.norm1 = common.batch_norm(c_out, rngs=rngs)
    self.rprelu1 = RPReLU(c_out)
    self.dropout = common.dropout_module(dropout, rngs=rngs)
    self.shift2 = common.rsign_shift(c_out, spec)
    self.conv2 = QuantConv(c_out, c_out, 3, padding=PAD1, spec=spec,
                           input_size=self.output_size, rngs=rngs)
    self.norm2 = common.batch_norm(c_out, rngs=rngs)
    if stride != 1 or c_in != c_out:
      self.shortcut = QuantConv(c_in, c_out, 1, strides=stride, padding="VALID",
                                spec=FP, input_size=input_size, rngs=rngs)
      self.shortcut_norm = common.batch_norm(c_out, rngs=rngs)
    else:
      self.shortcut = self.shortcut_norm = None
    self.rprelu = RPReLU(c_out)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    if not self.reactnet:
      o = self.preact1(x, train=train)
      y = self.conv2(self.preact2(self.conv1(o), train=train))
      return y + (x if self.shortcut is None else self.shortcut(o))
    bn = lambda norm, v: norm(v, use_running_average=not train)
    h = x if self.shift1 is None else self.shift1(x)
    h = self.rprelu1(bn(self.norm1, self.conv1(h)))
    if self.dropout is not None:
      h = self.dropout(h, deterministic=not train)
    if self.shift2 is not None:
      h = self.shift2(h)
    y = bn(self.norm2, self.conv2(h))
    s = x if self.shortcut is None else bn(self.shortcut_norm, self.shortcut(x))
    return self.rprelu(y + s)


class WRN22(nnx.Module):
  """WRN-``depth`` with widths ``(stem, stage1, stage2, stage3)``, BONN Table 3.

  Stem 3×3 conv → 3 stages of ``(depth - 4) / 6`` :class:`WideBasicBlock` with strides
  1, 2, 2 → head BN → act → global average pool → *features* → dense. ``spec``
  quantizes the block convs; the stem conv and the classifier are ``FP`` unless
  ``quantize_first``/``quantize_last``; 1×1 shortcut convs are always ``FP``. ``act``
  follows the binary-input rule (:mod:`bnnjax.models.common`); a binary-input stem
  conv gets a batch norm on the image before it. ``reactnet=True`` builds ReActNet's
  post-activation blocks (:class:`WideBasicBlock`) and so gives the stem conv the
  batch norm that the first block's pre-activation used to supply (``conv → BN``, ReLU
  only for a full-precision-input spec: ReActNet's stem); a binarised stem conv or
  classifier keeps its batch norm in front and gets RSign's shift after it.

  Args:
    num_classes: classifier outputs.
    input_shape: ``(H, W, C)`` of one example.
    spec: spec of the hidden convs.
    quantize_first: use ``spec`` for the stem conv too.
    quantize_last: use ``spec`` for the classifier too.
    rngs: ``nnx.Rngs`` (streams ``params``, and ``dropout`` when ``dropout > 0``).
    widths: ``(16, 16, 32, 64)`` (default) or ``(64, 64, 128, 256)`` (the wide one).
    dropout: rate between the two convs of each block (0.3 for the wide variant).
    depth: ``6k + 4``; 22 by default.
    reactnet: ReActNet's RSign and RPReLU (docs/reactnet.md).
  """

  def __init__(self, *, num_classes: int, input_shape, spec: QuantSpec,
               quantize_first: bool = False, quantize_last: bool = False,
               rngs: nnx.Rngs, widths=(16, 16, 32, 64), dropout: float = 0.0,
               depth: int = 22, reactnet: bool = False):
    h, w, c = common.check_model_args(num_classes=num_classes, input_shape=input_shape,
                                      spec=spec)
    widths = tuple(widths)
    if len(widths) != 4 or not all(isinstance(v, int) and v >= 1 for v in widths):
      raise ValueError(
          f"widths={widths!r} must be 4 positive integers (stem, stage 1, 2, 3), e.g. "
          "(16, 16, 32, 64).")
    if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
      raise ValueError(f"depth={depth!r}; allowed values are 6k + 4 with k >= 1 (22).")
    common.check_reactnet(reactnet)
    first, last = common.endpoint_specs(spec, quantize_first=quantize_first,
                                        quantize_last=quantize_last)
    self.input_norm = common.first_layer_norm(first, c, rsign=reactnet, rngs=rngs)
    self.stem_conv = QuantConv(c, widths[0], 3, padding=PAD1, spec=first,
                               input_size=(h, w), rngs=rngs)
    # ReActNet's post-activation blocks take a normalised input (no BN before the
    # sign): conv → BN, with a ReLU only where no sign follows (the binary-input rule).
    self.stem_norm = common.batch_norm(widths[0], rngs=rngs) if reactnet else None
    self.stem_relu = reactnet and not spec.binary_input
    hw = (h, w)
    blocks = []
    c_in = widths[0]
    for stage, (c_out, stride) in enumerate(zip(widths[1:], (1, 2, 2))):
      for b in range((depth - 4) // 6):
        block = WideBasicBlock(c_in, c_out, stride if b == 0 else 1, spec,
                               dropout=dropout, input_size=hw, reactnet=reactnet,
                               rngs=rngs)
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
    if self.stem_norm is not None:
      x = self.stem_norm(x, use_running_average=not train)
    if self.stem_relu:
      x = jax.nn.relu(x)
    for block in self.blocks:
      x = block(x, train=train)
    features = common.global_average_pool(self.head(x, train=train))
    logits = self.classifier(features)
    return (logits, features) if return_features else logits
