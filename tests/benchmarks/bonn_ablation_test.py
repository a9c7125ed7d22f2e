"""The BONN ablation runs end to end; the kernel loss makes latent weights two-moded."""

import json

from benchmarks import bonn_ablation


def test_ablation_end_to_end_and_kernel_loss_separates_modes(tmp_path):
  bonn_ablation.main(["--dataset=mnist", "--steps=20", "--width=4", "--test_examples=64",
                      f"--workdir={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}"])
  rows = json.load(open(tmp_path / "out" / "bonn_ablation.json"))["rows"]
  assert set(rows) == {"none", "kernel", "feature", "both"}
  assert all(0 <= r["top1_mean"] <= 100 for r in rows.values())
  # Same start (same seed), measurably more two-moded end with λ > 0.
  assert rows["kernel"]["ashman_d_start"] == rows["none"]["ashman_d_start"]
  assert rows["kernel"]["ashman_d_end"] > rows["none"]["ashman_d_end"] + 0.5
  assert rows["both"]["ashman_d_end"] > rows["feature"]["ashman_d_end"] + 0.5
  assert "| kernel loss only | 58.3 |" in open(tmp_path / "out" / "bonn_ablation.md").read()
