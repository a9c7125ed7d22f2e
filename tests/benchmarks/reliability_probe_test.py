"""benchmarks.reliability_probe: the probes run the real CLI and check what they claim;
a failing check fails the command; the table escapes the messages it quotes."""

import json

import pytest

from benchmarks import reliability_probe as rp


def test_cli_probes_refuse_cleanly_and_a_partial_run_writes_no_table(tmp_path, capsys):
  assert rp.main(["--only=unknown_field,missing_config_file", f"--out={tmp_path}"]) == 0
  out = capsys.readouterr().out
  assert out.count("ok   ") == 2 and "refused in" in out
  assert not list(tmp_path.iterdir())  # a partial run keeps the full table


def test_a_failed_check_fails_the_command_and_is_written(tmp_path, monkeypatch, capsys):
  def passing(env):
    return rp.Outcome(0, "FINAL resnet18 | done\n", "", 1.0), True, "fine"

  def failing(env):
    return rp.Outcome(1, "", "Traceback (most recent call last):\nboom\n", 1.0), False, "no"

  def broken(env):
    raise RuntimeError("cannot start")

  monkeypatch.setattr(rp, "PROBES", [rp.Probe("a", "1", "x|y", passing),
                                     rp.Probe("b", "2", "z", failing),
                                     rp.Probe("c", "+", "w", broken)])
  assert rp.main([f"--out={tmp_path}"]) == 1
  rows = json.loads((tmp_path / "reliability_probe.json").read_text())["rows"]
  assert [(r["id"], r["ok"], r["tracebacks"]) for r in rows] == [
      ("a", True, 0), ("b", False, 1), ("c", False, 0)]
  assert "boom" in rows[1]["stderr_tail"] and "cannot start" in rows[2]["detail"]
  md = (tmp_path / "reliability_probe.md").read_text()
  assert "1 of 3 checks pass" in md
  assert "| 1 | x/y | 0 | 0 | FINAL resnet18 \\| done | ok: fine |" in md


def test_unknown_probe_ids_are_refused():
  with pytest.raises(SystemExit):
    rp.main(["--only=nosuch"])
