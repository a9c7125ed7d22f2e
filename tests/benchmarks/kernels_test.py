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


def test_gpu_table_runs_in_interpret_mode(tmp_path):
  """The GPU kernel table's code path on this CPU (Pallas interpret mode): every path
  timed and exact on each row, auto marked, bandwidths and ratios filled in."""
  kb.main(["--device=gpu", "--quick=1", "--interpret=1", "--weights=2",
           "--copy_mib=1", "--table=1x256x256,128x64x64",
           "--variants=popcount:4x64:2,mma_a8:16x16x2", f"--out={tmp_path}"])
  data = json.loads((tmp_path / "kernels_gpu.json").read_text())
  assert data["device_kind"] and data["matmuls"] == [] and data["convs"] == []
  table = data["gpu_table"]
  assert table["copy_tbps"] > 0
  rows = table["rows"]
  assert [r["weights_per_jit"] for r in rows] == [2, 2]
  assert [r["shape"] for r in rows] == [[1, 256, 256], [128, 64, 64]]
  assert [r["auto"] for r in rows] == ["popcount", "mma"]
  # --quick skips the popcount path far above its rows (128 > 4·16).
  assert list(rows[0]["products"]) == ["int8", "bf16", "popcount", "mma", "mma_a8",
                                       "popcount[4x64:2]", "mma_a8[16x16x2]"]
  assert list(rows[1]["products"]) == ["int8", "bf16", "mma", "mma_a8",
                                       "mma_a8[16x16x2]"]
  for r in rows:
    assert all(r["exact"].values())
    for name, p in r["products"].items():
      assert p["time_s"] > 0 and p["weight_tbps"] > 0 and p["copy_fraction"] > 0
      assert p["weight_bytes"] == {"bf16": 2, "int8": 1}.get(
          name, 4 / 32) * r["shape"][1] * r["shape"][2]
    assert r["products"]["int8"]["vs_int8"] == 1.0
  md = (tmp_path / "kernels_gpu.md").read_text()
  assert "## GPU kernel table" in md and "| 1×256×256 | 2 | packed popcount (auto) |" in md
  assert "Interpret mode" in md and "## Matmuls" not in md


def test_gpu_table_checks_name_the_issue_targets():
  row = lambda shape, auto, **measures: {"shape": shape, "auto": auto,
                                         "products": {auto: measures}}
  checks = kb._gpu_table_checks({"rows": [
      row([1, 16384, 16384], "popcount", copy_fraction=0.75),
      row([4096, 8192, 8192], "mma_a8", vs_int8=0.5),
      row([16, 16384, 16384], "popcount", copy_fraction=0.1)]})
  assert checks == {
      "1×16384×16384": {"measure": "copy_fraction", "value": 0.75, "target": 0.7,
                        "met": True},
      "4096×8192×8192": {"measure": "vs_int8", "value": 0.5, "target": 0.8,
                         "met": False}}


def test_config_errors():
  with pytest.raises(ValueError, match="device"):
    kb.Config(device="tpu")
  with pytest.raises(ValueError, match="batches"):
    kb.Config(batches="a")
  with pytest.raises(RuntimeError, match="needs a GPU"):
    kb.run_benchmark(kb.Config(device="gpu"))
  with pytest.raises(ValueError, match="table"):
    kb.Config(table="1x2")
  for bad in ("mma:16x16", "popcount:8x8x8", "mma_a8:64x64x4:2", "dot:8x8", "popcount"):
    with pytest.raises(ValueError, match="variants"):
      kb.Config(variants=bad)
  assert kb.Config(variants="popcount:64x256:8,mma_a8:256x64x4").variant_list == [
      ("popcount", (64, 256), 8), ("mma_a8", (256, 64, 4), None)]
  with pytest.raises(ValueError, match="interpret"):
    kb.Config(interpret=1)
  assert kb.Config(table="1x16384x16384,4096x8192x8192", scale=64).table_shapes == [
      (1, 256, 256), (64, 128, 128)]
