"""benchmarks.gpu_precision: sign flips are counted per binary layer (none on CPU,
found where a packed model's input moves), the profile keeps the device's kernels,
and bad flags name themselves."""

import jax
import numpy as np
import pytest
from flax import nnx

from benchmarks import gpu_precision as gp
from bnnjax import models
from bnnjax import nn
from bnnjax import packed


def test_sign_flips_per_binary_layer():
  model = models.get_model("resnet18", num_classes=4, input_shape=(16, 16, 3),
                           spec=nn.method_spec("xnor"), rngs=nnx.Rngs(0), width=4)
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  pm = packed.pack_model(model)
  rows = gp.sign_flips(model, pm, x)
  assert len(rows) == 16  # the 16 binary convs, in call order
  assert all(r["flips"] == 0 and r["inputs"] > 0 for r in rows)
  # A packed model whose first binary layer sees another input (here every input is
  # >= 0, after the stem's ReLU and an identity batch norm): its flips are found.
  norm = pm.blocks[0].unit1.preact.norm
  norm.bias[...] = norm.bias[...] - 0.5
  rows = gp.sign_flips(model, pm, x)
  assert rows[0]["flips"] > 0 and rows[0]["max_abs_flipped"] > 0.0


def test_device_events_keep_the_device_processes():
  trace = {"traceEvents": [
      {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
      {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/host:CPU"}},
      {"ph": "X", "name": "conv", "pid": 1, "dur": 5.0},
      {"ph": "X", "name": "python", "pid": 2, "dur": 50.0},
      {"ph": "i", "name": "marker", "pid": 1}]}
  assert [e["name"] for e in gp._device_events(trace)] == ["conv"]
  trace["traceEvents"] = trace["traceEvents"][1:]  # no device process: every event
  assert sorted(e["name"] for e in gp._device_events(trace)) == ["conv", "python"]


@pytest.mark.parametrize("argv,field", [(["--precisions=tf32"], "--precisions"),
                                        (["--eval_batch=3"], "--eval_batch"),
                                        (["--method=xnorr"], "--method")])
def test_bad_flags_name_the_field(argv, field):
  with pytest.raises(ValueError, match=field):
    gp.parse_args(argv)
