"""The conv-lowering benchmark at tiny sizes: both shape sets run and write their files."""

import json

import pytest

from benchmarks import conv_lowering
from bnnjax.kernels import float_conv


def test_narrow_set_writes_its_own_file(tmp_path):
  conv_lowering.main(["--shapes=narrow", "--max_shapes=2", "--repeats=1", "--batch=2",
                      f"--out={tmp_path}"])
  data = json.loads((tmp_path / "conv_lowering_narrow_cpu.json").read_text())
  assert [r["shape"] for r in data["rows"]] == [list(s) for s in
                                                conv_lowering.NARROW_SHAPES[:2]]
  for row in data["rows"]:
    assert set(row["ms"]) == {f"{low}/{d}" for low in float_conv.LOWERINGS
                              for d in ("fwd", "fwd_bwd")}
    assert "xla_taps/fwd_bwd" in row["ms"]
    assert row["chosen"] == "xla"  # batch 2: below SMALL_CONV_MACS
  md = (tmp_path / "conv_lowering_narrow_cpu.md").read_text()
  assert "| 7×7 | 8→8 | 3/1/1 |" in md and "Machine: " in md
  table = [line for line in md.splitlines() if line.startswith("|")]
  assert len({line.count("|") for line in table}) == 1  # every row as wide as the header
  assert "xla_taps f+b" in table[0]
  assert not (tmp_path / "conv_lowering_cpu.json").exists()  # the peer table untouched


def test_config_errors():
  with pytest.raises(ValueError, match=r"--shapes='wide'; allowed values are "
                     r"\['narrow', 'peer'\]"):
    conv_lowering.Config(shapes="wide")
  with pytest.raises(ValueError, match="--repeats=0"):
    conv_lowering.Config(repeats=0)
