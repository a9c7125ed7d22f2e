"""The train-step roofline benchmark: its arithmetic, its thunk split, and a tiny run."""

import json
import os

import pytest

from benchmarks import train_roofline as tr


def test_floors_by_hand():
  # 12 GFLOP at 200 GFLOP/s is 60 ms; a 300 ms one-core step on 2 cores is 150 ms.
  assert tr.floors(12.0, 2, 200.0, 300.0) == pytest.approx(
      {"matmul_floor_ms": 60.0, "core_floor_ms": 150.0})
  assert tr.floors(1.5, 4, 50.0, None) == {"matmul_floor_ms": 30.0, "core_floor_ms": None}


def test_thunk_split_puts_products_apart(monkeypatch):
  kernels = [("ynn_fusion.12", 30.0, 4), ("dot.3", 2.0, 1), ("convolution.1", 1.0, 1),
             ("multiply_add_fusion.7", 5.0, 9), ("multiply_add_fusion", 1.0, 1),
             ("transpose_copy_fusion.2", 3.0, 1), ("ParseArguments", 9.0, 1),
             ("ThunkExecutor::Execute", 50.0, 1), ("$core.py:100 run", 70.0, 1),
             ("end: multiply_add_fusion", 0.5, 1)]
  monkeypatch.setattr(tr.gpu_precision, "profile",
                      lambda call, steps, top: {"kernels": kernels, "total_ms": 0.0})
  s = tr.thunk_split(lambda: None, 2)
  assert s["matmul_thunk_ms"] == pytest.approx(33.0)
  assert s["other_thunk_ms"] == pytest.approx(9.0)  # runtime events left out
  assert s["top_other"] == [["multiply_add_fusion", 6.0], ["transpose_copy_fusion", 3.0]]


def test_readme_workload_is_the_readme_command():
  from configs import bonn_resnet18
  config, info = tr.workload(tr.Config(), "readme")
  assert config.to_dict() == bonn_resnet18.get_config().to_dict()
  assert (info.image_shape, info.num_classes, info.num_train) == ((28, 28, 1), 10, 60000)
  config, _ = tr.workload(tr.Config(width=4, batch=8), "peer")
  assert (config.model_kwargs.width, config.batch_size, config.method) == (4, 8, "xnor")
  assert config.binary_compute == "auto" and config.model_kwargs.stem == "imagenet"


def test_tiny_run_writes_every_field(tmp_path):
  tr.main(["--workloads=peer", "--width=4", "--batch=8", "--repeats=2", "--warmup=1",
           "--gemm=128", "--profile_steps=1", f"--out={tmp_path}"])
  data = json.loads((tmp_path / "train_roofline_cpu.json").read_text())
  w = data["rows"]["peer"]
  for key in ("wall_ms", "cpu_ms", "gflop", "one_core_wall_ms", "scaling",
              "matmul_floor_ms", "core_floor_ms", "matmul_thunk_ms",
              "matmul_thunk_gflops", "first_call_s"):
    assert w[key] > 0, key
  assert data["gemm_gflops"] > 0 and data["gemm_gflops_one_core"] > 0
  cores = tr.cores()
  assert data["cores"] == cores == len(os.sched_getaffinity(0))
  assert w["matmul_floor_ms"] == pytest.approx(1e3 * w["gflop"] / data["gemm_gflops"])
  assert w["core_floor_ms"] == pytest.approx(w["one_core_wall_ms"] / cores)
  assert w["run_steps"] == 64000 // 8  # one epoch of train_speed's 64,000 examples
  md = (tmp_path / "train_roofline_cpu.md").read_text()
  assert "| `peer` (xnor, width 4, batch 8) |" in md
  assert "README command" not in md  # only with the readme workload


def test_no_core_floor_where_a_process_cannot_be_pinned(monkeypatch):
  monkeypatch.delattr(os, "sched_setaffinity")
  assert tr.one_core(tr.Config()) == {}
  r = {"config": {"gemm": 64, "repeats": 1, "profile_steps": 0}, "cores": 2,
       "platform": "cpu", "date": "d", "machine": "m", "glibc_tunables": "",
       "command": "c", "gemm_gflops": 10.0, "gemm_gflops_one_core": None,
       "rows": {"readme": {"method": "bonn", "width": 16, "batch": 128, "gflop": 1.0,
                           "wall_ms": 200.0, "cpu_ms": 300.0, "first_call_s": 9.0,
                           "run_steps": 10, **tr.floors(1.0, 2, 10.0, None)}}}
  md = tr.format_markdown(r)
  assert "| 1.00 | 200.0 | 300.0 | – | – | 100.0 | – | – |" in md
  # without a core floor the README line falls back to the matmul floor
  assert "at the measured step 2 s of steps; at the matmul floor 1 s" in md


def test_config_errors():
  with pytest.raises(ValueError, match="--workloads='readme,fast'"):
    tr.Config(workloads="readme,fast")
  with pytest.raises(ValueError, match="--method='bnn'"):
    tr.Config(method="bnn")
  with pytest.raises(ValueError, match="--gemm=0"):
    tr.Config(gemm=0)
  with pytest.raises(ValueError, match="--width=-1; allowed values are >= 0"):
    tr.Config(width=-1)
