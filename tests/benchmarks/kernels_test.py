"""The kernel benchmark at tiny sizes: runs, checks exactness, writes its results."""

import json

import pytest

from benchmarks import kernels as kb

TINY = ["--repeats=1", "--batches=1", "--scale=16", "--max_convs=2"]


def test_tiny_run_writes_ratios(tmp_path):
  results = kb.main(TINY + [f"--out={tmp_path}"])
  data = json.loads((tmp_path / "kernels_cpu.json").read_text())
  assert data["packed_impl"] == "xla"
  assert [r["shape"] for r in data["matmuls"]] == [[1, 256, 256], [1, 256, 256],
                                                   [64, 64, 64]]
  assert [r["name"] for r in data["matmuls"]] == ["gemv_1", "gemv_16", "matmul_1024"]
  assert len(data["convs"]) == 2
  for r in data["matmuls"] + data["convs"]:
    assert r["speedup_vs"]["f32"] > 0
  assert "resnet18_conv_b1_geomean" in results["summary"]
  md = (tmp_path / "kernels_cpu.md").read_text()
  assert "| 1×256×256 |" in md and "Shared machine" in md


def test_config_errors():
  with pytest.raises(ValueError, match="device"):
    kb.Config(device="tpu")
  with pytest.raises(ValueError, match="batches"):
    kb.Config(batches="a")
  with pytest.raises(RuntimeError, match="needs a GPU"):
    kb.run_benchmark(kb.Config(device="gpu"))
