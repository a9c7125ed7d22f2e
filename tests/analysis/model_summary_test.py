"""summary(): hand-counted two-layer models, and every zoo model × method."""

import jax
import numpy as np
import pytest
from flax import nnx

from bnnjax import analysis
from bnnjax import models
from bnnjax import nn
from tests.tiny_zoo import TINY

H, W, C, O, CLASSES = 6, 6, 3, 4, 5


class TwoLayer(nnx.Module):
  """3×3 conv (SAME, 3 → 4 channels on 6×6) quantized by ``spec``, then an FP dense."""

  def __init__(self, spec, *, dense_spec=nn.FP, rngs):
    self.conv = nn.QuantConv(C, O, 3, padding="SAME", spec=spec, input_size=(H, W),
                             rngs=rngs)
    self.dense = nn.QuantDense(H * W * O, CLASSES, spec=dense_spec, rngs=rngs)

  def __call__(self, x):
    return self.dense(self.conv(x).reshape(x.shape[0], -1))


def two_layer(method, **kw):
  return TwoLayer(nn.method_spec(method), rngs=nnx.Rngs(params=0), **kw)


# Hand counts for the conv: kernel 3·3·3·4 = 108 weights, output 6·6·4 = 144 values,
# 36 output pixels, 27 = kh·kw·c taps per output.
KERNEL, OUTPUTS, PIXELS, TAPS = 108, 144, 36, 27
MACS = PIXELS * KERNEL  # 3888
DENSE_W, DENSE_B = 144 * 5, 5


def test_xnor_conv_then_fp_dense_by_hand():
  s = analysis.summary(two_layer("xnor"), (H, W, C), print_fn=None)
  conv, dense = s.layers
  assert (conv.name, conv.kind, conv.method) == ("conv", "QuantConv", "xnor")
  assert conv.input_precision == 1 and conv.output_shape == (6, 6, 4)
  assert conv.params_by_bits == {1: KERNEL, 32: O}  # sign(W) + α per filter
  assert conv.memory_bytes == (KERNEL + 32 * O) / 8  # 29.5 bytes
  assert conv.macs_by_precision == {1: MACS}
  assert conv.binary_ops == OUTPUTS * 1  # ⌈27/64⌉ = 1 word per output
  assert conv.scale_mults == OUTPUTS  # α
  assert conv.k_mults == 36 + 36 + OUTPUTS  # mean_c|I|, box filter, apply K
  assert conv.fp_mults == OUTPUTS + 216
  assert conv.speedup == pytest.approx(64 * 27 / (27 + 64))  # XNOR-Net §3.3
  assert dense.kind == "QuantDense" and dense.method == "fp"
  assert dense.input_precision == 32 and dense.output_shape == (5,)
  assert dense.params_by_bits == {32: DENSE_W + DENSE_B}
  assert dense.macs_by_precision == {32: DENSE_W}
  assert dense.fp_mults == DENSE_W and dense.binary_ops == 0 and dense.speedup == 1.0
  # Totals.
  assert s.params_by_bits == {1: 108, 32: 4 + 725}
  assert s.total_params == 837
  assert s.memory_bytes == 29.5 + 725 * 4
  assert s.fp32_bytes == 837 * 4
  assert s.compression_ratio == pytest.approx(3348 / 2929.5)
  assert s.total_macs == 3888 + 720
  assert s.binary_mac_fraction == pytest.approx(3888 / 4608)
  assert s.fp_mults == 360 + 720
  assert s.training_only_params == 0
  t = s.totals()
  assert t["params_1bit"] == 108 and t["macs_32bit"] == 720


@pytest.mark.parametrize("method,scale_params,scale_mults,k_mults,speedup", [
    # cross-filter n=2: 4/2 shared α, one multiplication per 2 outputs, K as XNOR.
    ("xnor_cf_2", 2, OUTPUTS // 2, 216, 1.91 * 64 * 27 / (27 + 1.91 * 64 / 2)),
    # XNOR-Net++ Γ: stored factors, one multiplication per output, no K.
    ("xnorpp_1", O, OUTPUTS, 0, 64 * 9 * O / (9 * O + 1)),
    ("xnorpp_2", 6 * 6 * O, OUTPUTS, 0, 64 * 9 * O / (9 * O + 1)),
    ("xnorpp_3", O + 6 * 6, OUTPUTS, 0, 64 * 9 * O / (9 * O + 1)),
    ("xnorpp_4", O + 6 + 6, OUTPUTS, 0, 64 * 9 * O / (9 * O + 1)),
    # BONN: the folded scalar 1/mean(w) at inference.
    ("bonn", 1, OUTPUTS, 0, 64 * 27 / (27 + 64)),
])
def test_binary_methods_by_hand(method, scale_params, scale_mults, k_mults, speedup):
  conv = analysis.summary(two_layer(method), (H, W, C), print_fn=None).layers[0]
  assert conv.params_by_bits == {1: KERNEL, 32: scale_params}
  assert conv.macs_by_precision == {1: MACS}
  assert conv.binary_ops == OUTPUTS
  assert conv.scale_mults == scale_mults and conv.k_mults == k_mults
  assert conv.fp_mults == scale_mults + k_mults
  assert conv.speedup == pytest.approx(speedup)
  # BONN's w (3×3), μ and log σ (4 each) are training-only.
  assert conv.training_only_params == (9 + 4 + 4 if method == "bonn" else 0)


@pytest.mark.parametrize("method,alphas", [("bwn", O), ("bw_cf_2", 2)])
def test_binary_weights_full_precision_input(method, alphas):
  conv = analysis.summary(two_layer(method), (H, W, C), print_fn=None).layers[0]
  assert conv.input_precision == 32
  assert conv.params_by_bits == {1: KERNEL, 32: alphas}
  assert conv.macs_by_precision == {32: MACS}  # Larq: precision of the wider operand
  assert conv.binary_ops == 0 and conv.k_mults == 0
  assert conv.fp_mults == conv.scale_mults == OUTPUTS * alphas // O  # ±1 needs no mult
  assert conv.speedup is None


def test_xnor_dense_and_batch_norm_rows():
  class Net(nnx.Module):
    def __init__(self, rngs):
      self.norm = nnx.BatchNorm(8, rngs=rngs)
      self.dense = nn.QuantDense(8, 3, spec=nn.method_spec("xnor"), rngs=rngs)

    def __call__(self, x, *, train=False):
      return self.dense(self.norm(x, use_running_average=not train))

  s = analysis.summary(Net(nnx.Rngs(0)), (8,), print_fn=None, L=4)
  norm, dense = s.layers
  assert norm.kind == "BatchNorm" and norm.params_by_bits == {32: 4 * 8}
  assert norm.macs_by_precision == {} and norm.output_shape == (8,)
  assert dense.params_by_bits == {1: 24, 32: 3 + 3}  # sign(W), α, bias
  assert dense.macs_by_precision == {1: 24}
  assert dense.binary_ops == 3 * 2  # ⌈8/4⌉ words per output with L=4
  assert dense.k_mults == 1 + 3 and dense.scale_mults == 3
  assert dense.speedup == pytest.approx(4 * 8 / (8 + 4))


def test_abstract_model_gives_the_same_summary():
  concrete = analysis.summary(two_layer("xnor_cf_2"), (H, W, C), print_fn=None)
  abstract = nnx.eval_shape(lambda: two_layer("xnor_cf_2"))
  assert analysis.summary(abstract, (H, W, C), print_fn=None) == concrete


def test_prints_table_and_totals():
  lines = []
  s = analysis.summary(two_layer("xnor"), (H, W, C), print_fn=lines.append)
  text = lines[0]
  assert text == str(s)
  for needle in ("conv", "dense", "1-bit MACs", "Compression ratio",
                 "Fraction of binary MACs", "Model size", "Float-32 equivalent"):
    assert needle in text
  rows = s.as_dicts()
  assert rows[0]["params_1bit"] == 108 and rows[1]["macs_32bit"] == 720


def test_bad_arguments():
  model = two_layer("xnor")
  with pytest.raises(ValueError, match="input_shape"):
    analysis.summary(model, (6, 0, 3), print_fn=None)
  with pytest.raises(ValueError, match="input_shape"):
    analysis.summary(model, 6, print_fn=None)
  with pytest.raises(ValueError, match="L="):
    analysis.summary(model, (H, W, C), L=0, print_fn=None)
  with pytest.raises(TypeError, match="model"):
    analysis.summary(lambda x: x, (H, W, C), print_fn=None)


def test_patched_call_is_restored():
  before = (nn.QuantConv.__dict__["__call__"], nn.QuantDense.__dict__["__call__"])
  analysis.summary(two_layer("xnor"), (H, W, C), print_fn=None)
  with pytest.raises(Exception):
    analysis.summary(two_layer("xnor"), (5, 5, 3), print_fn=None)  # wrong input size
  assert (nn.QuantConv.__dict__["__call__"], nn.QuantDense.__dict__["__call__"]) == before
  assert "__call__" not in nnx.BatchNorm.__dict__ or callable(nnx.BatchNorm.__call__)


METHODS = ["fp", "bwn", "xnor", "bw_cf_2", "xnor_cf_2", "xnorpp_1", "xnorpp_2",
           "xnorpp_3", "xnorpp_4", "bonn"]


@pytest.mark.parametrize("name", list(models.MODELS))
def test_every_model_and_method(name):
  shape, kwargs = TINY[name]
  for method in METHODS:
    for first_last in (False, True):
      model = nnx.eval_shape(lambda: models.get_model(
          name, num_classes=10, input_shape=shape, spec=nn.method_spec(method),
          quantize_first=first_last, quantize_last=first_last,
          rngs=nnx.Rngs(params=0, dropout=1), **kwargs))
      s = analysis.summary(model, shape, print_fn=None)
      quant = [l for l in s.layers if l.kind in ("QuantConv", "QuantDense")]
      # Every weight layer was traced, the classifier last, with num_classes outputs.
      assert all(l.output_shape is not None for l in s.layers)
      assert quant[-1].output_shape[-1] == 10
      # Totals are the sums of the model's variables (binary kernels at 1 bit).
      n_vars = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(
          nnx.state(model, nnx.Param, nnx.BatchStat)))
      stored_scales = {"xnor": 1, "xnor_cf_2": 0.5, "bwn": 1, "bw_cf_2": 0.5}
      extra = sum(int(stored_scales.get(l.method, 0) * l.output_shape[-1])
                  + (l.method == "bonn") for l in quant)
      assert s.total_params + s.training_only_params == n_vars + extra
      if method == "fp":
        assert s.binary_mac_fraction == 0 and s.params_by_bits.keys() == {32}
        assert s.compression_ratio == 1.0
      elif method in ("bwn", "bw_cf_2"):
        assert s.binary_mac_fraction == 0 and s.params_by_bits[1] > 0
      else:
        assert 0 < s.binary_mac_fraction <= 1
        assert (s.binary_mac_fraction == 1) == (first_last and name != "resnet18"
                                                and name != "wrn22")
        assert all(l.speedup > 1 for l in quant if l.method != "fp")
      assert s.compression_ratio >= 1
      str(s)
