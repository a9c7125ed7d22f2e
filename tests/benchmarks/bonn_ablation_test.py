"""The BONN ablation runs end to end as points of bonn_resnet18's sweep; the kernel loss
makes latent weights two-moded."""

import json

import pytest

from benchmarks import bonn_ablation


def test_ablation_end_to_end_and_kernel_loss_separates_modes(tmp_path):
  # Coupled, the form whose pull on the latent weights shows in 20 steps (the config
  # default, decoupled, leaves them as without the loss: docs/bonn.md#investigation).
  # 2048 training examples (20 steps of 128 see 2560): reading all 60000 was a quarter
  # of the test's time.
  args = ["--dataset=mnist", "--width=4", "--train_examples=2048", "--test_examples=64",
          "--kernel_loss=coupled", f"--workdir={tmp_path / 'runs'}",
          f"--out={tmp_path / 'out'}"]
  # Two of the four variants keep the test inside CI's budget (each is a ResNet-18
  # compile); the other two are the same code path with θ > 0.
  bonn_ablation.main(["--steps=20", "--variants=none,kernel", *args])
  rows = json.load(open(tmp_path / "out" / "bonn_ablation.json"))["rows"]
  assert set(rows) == {"none", "kernel"}
  assert rows["kernel"]["sweep_point"] == "bonn_lambda=0.0001,bonn_theta=0.0"
  assert all(0 <= r["top1_mean"] <= 100 for r in rows.values())
  # Same start (same seed), measurably more two-moded end with λ > 0.
  assert rows["kernel"]["ashman_d_start"] == rows["none"]["ashman_d_start"]
  assert rows["kernel"]["ashman_d_end"] > rows["none"]["ashman_d_end"] + 0.5
  md = open(tmp_path / "out" / "bonn_ablation.md").read()
  assert "| kernel loss only | 58.3 |" in md and "the kernel loss coupled" in md
  assert json.load(open(tmp_path / "out" / "bonn_ablation.json"))["settings"][
      "kernel_decoupled"] is False
  assert "none_seed0" in open(tmp_path / "runs" / "sweep_results.md").read()
  # Finished runs of other settings are refused, not read as they are.
  with pytest.raises(ValueError, match=r"none_seed0 holds a run with a different "
                     r"config \(num_train_steps: 20 -> 21"):
    bonn_ablation.main(["--steps=21", "--variants=none,kernel", *args])
  with pytest.raises(SystemExit):
    bonn_ablation.main(["--variants=none,nosuch", *args])
