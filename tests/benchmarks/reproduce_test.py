"""benchmarks.reproduce: the table registry against the configs, the aggregation (mean,
population std, Δ, the paper's ordering) by hand, incomplete tables, merging with an
earlier reproduce.json, the linked PTQ / fidelity sections, the smoke mode end to end
and the errors of bad arguments.

Training is stubbed here, as in reactnet_compare_test: each real ResNet-18 run costs
minutes of XLA compilation on a 2-core CPU however few its steps. Every variant's
config is still checked for real (its fields validated, its model built shapes-only),
the smoke run goes through ``experiments.sweep.run_sweep`` (which builds each
unfinished point's model and optimizer), and real runs of these configs are trained
in tests/benchmarks/bonn_ablation_test.py and the trainer's tests.
"""

import json
import math
import os
import re

import numpy as np
import pytest

from benchmarks import reproduce
from benchmarks import sweep_runs
from bnnjax.train.validation import ConfigError
from experiments import sweep

# Stub top-1 (fraction) of each run of xnorpp_t1, seeds 0 and 1; case4_seed1 stops on
# a NaN loss. By hand: means xnor 71, case1 77, case2 75, case3 80, case4 81 (one
# seed); population stds 1, 2, 1, 0, 0; Δ vs xnor +6, +4, +9, +10; the paper's
# ordering xnor < case1 < case2 < case3 < case4 holds for 3 of its 4 pairs
# (case1 < case2 fails: 77 > 75).
TOP1 = {"xnor_seed0": 0.70, "xnor_seed1": 0.72, "case1_seed0": 0.75,
        "case1_seed1": 0.79, "case2_seed0": 0.74, "case2_seed1": 0.76,
        "case3_seed0": 0.80, "case3_seed1": 0.80, "case4_seed0": 0.81,
        "case4_seed1": math.nan,
        # bonn_t2, seed 0: none < kernel fails, the other four pairs hold.
        "none_seed0": 0.82, "kernel_seed0": 0.60, "feature_seed0": 0.83,
        "both_seed0": 0.84, "kernel_coupled_seed0": 0.70,
        "both_coupled_seed0": 0.69, "xnor_seed0@bonn": 0.79}


@pytest.fixture
def stub_points(monkeypatch):
  """Replaces ``sweep_runs.train_points`` by a stub answering each point with its
  :data:`TOP1` (no run directory is written); returns the names it was given."""
  calls = []

  def fake_train_points(config, points, workdir, command):
    swept = {}
    for p in points:
      calls.append(p.name)
      bonn = os.path.basename(workdir) == "bonn_resnet18"
      key = p.name + ("@bonn" if p.name == "xnor_seed0" and bonn else "")
      top1 = TOP1[key]
      swept[p.name] = {"point": p.name, "test/top1": top1, "test/top5": 1.0,
                       "test/loss": 0.0, "step": p.overrides["num_train_steps"],
                       "status": "failed: loss is NaN" if math.isnan(top1) else "done"}
    return swept, {n: 10.0 for n in swept}
  monkeypatch.setattr(sweep_runs, "train_points", fake_train_points)
  return calls


@pytest.fixture
def stub_training(stub_train):
  """Training stubbed (conftest's ``stub_train``) with top-1 0.5 + 0.1·gamma_case;
  returns the configs it trained."""
  return stub_train(lambda c: 0.5 + 0.1 * (c.gamma_case or 0))


def test_registry_variants_are_the_configs_sweeps_and_valid_configs():
  assert list(reproduce.TABLES) == ["xnorpp_t1", "cf_t3", "cf_t4", "bonn_t2", "bonn_ft"]
  t1 = reproduce.TABLES["xnorpp_t1"]
  assert {v: t.paper for v, t in t1.variants.items()} == {
      "xnor": 51.2, "case1": 55.5, "case2": 56.1, "case3": 56.7, "case4": 57.1}
  assert t1.variants["xnor"].overrides == {"method": "xnor", "gamma_case": None}
  cf = reproduce._sweep_overrides("cf_resnet18")
  t3 = reproduce.TABLES["cf_t3"]
  assert list(t3.variants) == [f"{m}_{n}" for m in ("bw_cf", "xnor_cf")
                               for n in (1, 2, 4, 8, 16)]
  assert all(t.overrides == cf[v] and t.paper is None for v, t in t3.variants.items())
  t4 = reproduce.TABLES["cf_t4"]
  assert {v: t.paper for v, t in t4.variants.items()} == {
      "bw_cf_2": 90.15, "bw_cf_2_first": 87.79, "bw_cf_2_last": 90.45,
      "xnor_cf_2": 85.95, "xnor_cf_2_first": 77.92, "xnor_cf_2_last": 84.55}
  assert t4.variants["xnor_cf_2_last"].overrides == {
      "method": "xnor_cf", "group_size": 2, "quantize_last": True}
  bonn = reproduce.TABLES["bonn_t2"]
  assert {v: t.paper for v, t in bonn.variants.items()} == {
      "none": 56.3, "kernel": 58.3, "feature": 58.4, "both": 59.3,
      "kernel_coupled": None, "both_coupled": None, "xnor": 51.2}
  assert bonn.variants["both"].overrides == {"bonn_lambda": 1e-4, "bonn_theta": 1e-3}
  assert bonn.variants["both_coupled"].overrides == {
      "bonn_lambda": 1e-4, "bonn_theta": 1e-3, "bonn_kernel_decoupled": False}

  for key, table in reproduce.TABLES.items():
    # The paper's own numbers satisfy the ordering it claims, where it has numbers.
    paper = reproduce.ordering_check({v: t.paper for v, t in table.variants.items()},
                                     table.ordering)
    assert paper["holds"] == paper["measured"], key
    assert all(v in table.variants for chain in table.ordering for v in chain)
    width = reproduce.table_width(table, None)
    assert width == (16 if key.startswith(("cf_", "bonn_")) else
                     reproduce.DEFAULT_WIDTH)
    for config, point in reproduce.table_points(
        table, list(table.variants), dataset="fashion_mnist", seeds=[0],
        steps=reproduce.DEFAULT_STEPS, width=width):
      c = sweep.apply_overrides(config, point)
      reproduce.check_config(c, f"{key}/{point.name}")  # fields and model shapes
      fine_tune = point.name.startswith("ft_")
      assert (c.num_train_steps, c.model_kwargs.width, c.dataset) == (
          150 if fine_tune else 300, width, "fashion_mnist")
      assert c.init_from == ("xnor_seed0" if fine_tune else None)
      if key.startswith("bonn_"):
        assert c.method == ("xnor" if point.name in ("xnor_seed0", "ft_xnor_seed0")
                            else "bonn")
  # A width that n = 16 does not divide is refused before anything is built.
  with pytest.raises(ConfigError, match="group_size=16 does not divide"):
    config, point = reproduce.table_points(t3, ["bw_cf_16"], dataset="mnist",
                                           seeds=[0], steps=3, width=8)[0]
    reproduce.check_config(sweep.apply_overrides(config, point), "bw_cf_16_seed0")


def test_bonn_tables_train_at_the_configs_own_budget():
  from bnnjax import data as data_lib
  from bnnjax.train import trainer
  config = reproduce.base_config(reproduce.TABLES["bonn_t2"], "fashion_mnist")
  info = data_lib.dataset_info("fashion_mnist")
  assert trainer._steps(config, info)[1] == reproduce.BONN_STEPS == 936
  for key in ("bonn_t2", "bonn_ft"):
    table = reproduce.TABLES[key]
    assert reproduce.table_steps(table, None) == reproduce.BONN_STEPS
    assert reproduce.table_width(table, None) == config.model_kwargs.width == 16
    assert reproduce.table_steps(table, 20) == 20
  assert reproduce.table_steps(reproduce.TABLES["cf_t3"], None) == 300


def test_ordering_check_by_hand():
  check = reproduce.ordering_check({"a": 1.0, "b": 2.0, "c": 1.5, "d": None},
                                   [("a", "b", "c"), ("a", "d")])
  assert check["pairs"] == [["a", "b", "holds"], ["b", "c", "fails"],
                            ["a", "d", "unmeasured"]]
  assert (check["holds"], check["measured"], check["total"]) == (1, 2, 3)
  lower = reproduce.ordering_check({"a": 1.0, "b": 0.5, "c": 0.5}, [("a", "b", "c")],
                                   higher_is_better=False)
  assert [p[2] for p in lower["pairs"]] == ["holds", "fails"]  # a tie does not hold


def test_aggregation_by_hand_incomplete_and_merge(tmp_path, stub_points):
  out, runs = tmp_path / "out", tmp_path / "runs"
  results = reproduce.main(["--tables=xnorpp_t1", "--seeds=0,1", f"--workdir={runs}",
                            f"--out={out}"])
  assert stub_points == [f"{v}_seed{s}" for s in (0, 1)  # seed-major
                         for v in ("xnor", "case1", "case2", "case3", "case4")]
  rec = results["tables"]["xnorpp_t1"]
  rows = rec["rows"]
  means = {"xnor": 71.0, "case1": 77.0, "case2": 75.0, "case3": 80.0, "case4": 81.0}
  stds = {"xnor": 1.0, "case1": 2.0, "case2": 1.0, "case3": 0.0, "case4": 0.0}
  for v in means:
    assert rows[v]["top1_mean"] == pytest.approx(means[v])
    assert rows[v]["top1_std"] == pytest.approx(stds[v])  # population std
    assert rows[v]["delta"] == pytest.approx(means[v] - 71.0)
  assert rows["case1"]["top1"] == pytest.approx([75.0, 79.0])
  assert rows["case1"]["top1_std"] == pytest.approx(np.std([75.0, 79.0]))
  assert rows["case1"]["paper_delta"] == pytest.approx(55.5 - 51.2)
  assert rows["case4"]["seeds"] == [0] and rows["case4"]["status"] == [
      "done", "failed: loss is NaN"]
  assert rec["ordering"]["pairs"][1] == ["case1", "case2", "fails"]
  assert (rec["ordering"]["holds"], rec["ordering"]["total"]) == (3, 4)
  assert not rec["complete"] and rec["missing"] == [
      "case4_seed1 (failed: loss is NaN)"]
  assert rec["settings"]["steps"] == 300 and rec["settings"]["width"] == 8
  md = open(out / "reproduce.md").read()
  assert ("| Case 1: α ∈ R^o | 55.5 | +4.30 | 77.00 ± 2.00 | +6.00 vs Baseline XNOR "
          "`⊙ K ⊙ α` | 75.00, 79.00 | 10 s |") in md
  assert "81.00 ± 0.00 (1 of 2 seeds)" in md
  assert "**Ordering on our means: holds for 3 of 4 pairs; fails: Case 1" in md
  assert "**incomplete**: 1 of 10 runs not finished" in md
  assert "Not run yet: `cf_t3`, `cf_t4`, `bonn_t2`" in md

  # Another table later: xnorpp_t1's results stay, in the JSON and the markdown.
  # --max_runs=2 trains two of the seven runs; the others are written as not run.
  stub_points.clear()
  results = reproduce.main(["--tables=bonn_t2", "--seeds=0", "--max_runs=2",
                            f"--workdir={runs}", f"--out={out}"])
  assert stub_points == ["none_seed0", "kernel_seed0"]
  saved = json.load(open(out / "reproduce.json"))
  assert list(saved["tables"]) == ["xnorpp_t1", "bonn_t2"]
  assert saved["tables"]["xnorpp_t1"] == rec
  bonn = saved["tables"]["bonn_t2"]
  assert bonn["missing"] == ["feature_seed0 (not run)", "both_seed0 (not run)",
                             "kernel_coupled_seed0 (not run)",
                             "both_coupled_seed0 (not run)", "xnor_seed0 (not run)"]
  assert bonn["rows"]["kernel"]["delta"] == pytest.approx(60.0 - 82.0)
  assert bonn["ordering"]["measured"] == 1 and bonn["ordering"]["holds"] == 0
  md = open(out / "reproduce.md").read()
  assert "(`xnorpp_t1`)" in md and "(`bonn_t2`)" in md

  # The rest of bonn_t2: all five pairs measured, four hold (none < kernel fails).
  results = reproduce.main(["--tables=bonn_t2", "--seeds=0", f"--workdir={runs}",
                            f"--out={out}"])
  bonn = results["tables"]["bonn_t2"]
  assert bonn["complete"] and bonn["rows"]["xnor"]["top1"] == pytest.approx([79.0])
  assert bonn["rows"]["both"]["delta"] == pytest.approx(2.0)
  assert (bonn["ordering"]["holds"], bonn["ordering"]["total"]) == (4, 5)
  assert results["tables"]["xnorpp_t1"] == rec

  # A results file that is not a reproduce.json is refused before anything trains.
  (out / "reproduce.json").write_text("not json")
  stub_points.clear()
  with pytest.raises(ValueError, match="is not a results file of benchmarks.reproduce"):
    reproduce.main(["--tables=xnorpp_t1", "--seeds=0", f"--workdir={runs}",
                    f"--out={out}"])
  assert not stub_points and (out / "reproduce.json").read_text() == "not json"


def test_linked_sections(tmp_path, monkeypatch):
  ptq = json.load(open(os.path.join(reproduce.RESULTS_DIR, "ptq_resnet18.json")))
  section = reproduce.ptq_section(reproduce.RESULTS_DIR)
  assert section["file"] == "benchmarks/results/ptq_resnet18.json"
  assert section["float_top1"] == ptq["float"]["top1"]
  row = next(r for r in ptq["rows"] if (r["scheme"], r["granularity"], r["bits"])
             == ("asymmetric", "per_tensor", 3))
  assert section["curve"]["asymmetric per tensor"]["3"] == row["top1"]
  fid = reproduce.xnorpp_fidelity_section(reproduce.RESULTS_DIR)
  assert fid["rows"]["xnor"]["paper_mean"] == 0.095
  results = {"command": "c", "date": "d", "tables": {},
             "linked": {"xnorpp_t2": fid, "ptq": section}}
  md = reproduce.format_markdown(results, out_dir=str(tmp_path))
  link = os.path.relpath(os.path.join(reproduce.RESULTS_DIR, "ptq_resnet18.md"),
                         tmp_path)
  assert f"[ptq_resnet18.md]({link})" in md
  assert f"| asymmetric per tensor | {ptq['float']['top1']:.2f} |" in md

  monkeypatch.setattr(reproduce, "RESULTS_DIR", str(tmp_path))
  results["linked"] = {"xnorpp_t2": reproduce.xnorpp_fidelity_section(str(tmp_path)),
                       "ptq": reproduce.ptq_section(str(tmp_path))}
  md = reproduce.format_markdown(results, out_dir=str(tmp_path))
  assert "ptq_resnet18.json` is missing: run `python -m experiments.ptq" in md
  assert ("xnorpp_fidelity.json` is missing: run `python -m benchmarks.xnorpp_fidelity`"
          in md)


def test_smoke_mode_end_to_end(tmp_path, stub_training):
  workdir = tmp_path / "runs"
  results = reproduce.main(["--smoke", "--tables=xnorpp_t1", f"--workdir={workdir}"])
  smoke = workdir / "smoke"  # runs and tables stay under the workdir
  assert sorted(os.listdir(smoke)) == ["reproduce.json", "reproduce.md",
                                       "xnorpp_resnet18"]
  assert sorted(os.listdir(smoke / "xnorpp_resnet18")) == [
      "case1_seed0", "sweep_results.csv", "sweep_results.md", "xnor_seed0"]
  assert [(c.method, c.gamma_case) for c in stub_training] == [("xnor", None),
                                                               ("xnorpp", 1)]
  for c in stub_training:
    assert (c.dataset, c.seed, c.num_train_steps, c.model_kwargs.width,
            c.num_train_examples, c.num_test_examples) == ("mnist", 0, 3, 4, 256, 64)
  rec = json.load(open(smoke / "reproduce.json"))["tables"]["xnorpp_t1"]
  assert rec == results["tables"]["xnorpp_t1"] and list(rec["rows"]) == ["xnor", "case1"]
  assert rec["rows"]["case1"]["delta"] == pytest.approx(10.0)
  assert rec["complete"] and rec["settings"]["smoke"]
  assert rec["ordering"]["pairs"][0] == ["xnor", "case1", "holds"]
  md = open(smoke / "reproduce.md").read()
  assert "--smoke" in md and "3 steps of batch 128" in md

  # Run again: every run is read, none trained; other settings are refused.
  stub_training.clear()
  again = reproduce.main(["--smoke", "--tables=xnorpp_t1", f"--workdir={workdir}"])
  assert not stub_training
  assert again["tables"]["xnorpp_t1"]["rows"]["xnor"]["status"] == ["done (earlier)"]
  with pytest.raises(ConfigError, match=r"xnor_seed0 holds a run with a different "
                     r"config \(num_train_steps: 3 -> 4"):
    reproduce.main(["--smoke", "--steps=4", "--tables=xnorpp_t1",
                    f"--workdir={workdir}"])


def test_fine_tune_table_trains_its_source_first_and_shares_it(tmp_path, stub_train):
  """bonn_ft's runs start from the xnor run of their seed (config.init_from), which
  bonn_t2 shares: listed first, trained once, then each fine-tune for half the
  steps."""
  calls = stub_train(lambda c: 0.5)
  workdir = tmp_path / "runs"
  reproduce.main(["--smoke", "--tables=bonn_t2,bonn_ft", f"--workdir={workdir}",
                  "--steps=4"])
  root = str(workdir / "smoke" / "bonn_resnet18")
  trained = [(os.path.basename(c.init_from or ""), c.method, c.num_train_steps)
             for c in calls]
  # bonn_t2's first two variants (none, kernel), then bonn_ft's (xnor, ft_xnor).
  assert trained == [("", "bonn", 4), ("", "bonn", 4), ("", "xnor", 4),
                     ("xnor_seed0", "xnor", 2)]
  assert calls[-1].init_from == os.path.join(root, "xnor_seed0")
  rec = json.load(open(workdir / "smoke" / "reproduce.json"))["tables"]["bonn_ft"]
  assert list(rec["rows"]) == ["xnor", "ft_xnor"] and rec["complete"]


def test_variants_option_trains_only_those_and_a_fine_tunes_source(tmp_path, stub_train,
                                                                   monkeypatch):
  """--variants trains the variants named (a fine-tune's source too, before it),
  seed-major across the two base configs (bonn, method=xnor), and the table still
  lists every variant, those not run marked so; checkpoints every quarter."""
  calls = stub_train(lambda c: 0.5)
  workdir = tmp_path / "runs"
  out = tmp_path / "out"
  written = []  # finished runs in the results file at each write
  write = reproduce.write
  monkeypatch.setattr(reproduce, "write", lambda new, *a: written.append(
      sum(len(r["top1"]) for t in new.values() for r in t["rows"].values()))
      or write(new, *a))
  reproduce.main(["--tables=bonn_t2,bonn_ft", "--variants=both,ft_both", "--seeds=0,1",
                  "--steps=8", "--width=4", "--train_examples=256",
                  "--test_examples=64", "--dataset=mnist", f"--workdir={workdir}",
                  f"--out={out}"])
  trained = [(os.path.basename(c.init_from or ""), c.method, c.num_train_steps,
              c.get("bonn_lambda", 0) > 0, c.get("bonn_theta", 0) > 0,
              c.checkpoint_every_steps)
             for c in calls]
  assert trained == [("", "bonn", 8, True, True, 2), ("", "xnor", 8, False, False, 2),
                     ("xnor_seed0", "bonn", 4, True, True, 1)] + [
                     ("", "bonn", 8, True, True, 2), ("", "xnor", 8, False, False, 2),
                     ("xnor_seed1", "bonn", 4, True, True, 1)]
  tables = json.load(open(out / "reproduce.json"))["tables"]
  assert list(tables["bonn_t2"]["rows"]) == list(reproduce.TABLES["bonn_t2"].variants)
  assert "none_seed0 (not run)" in tables["bonn_t2"]["missing"]
  assert tables["bonn_t2"]["rows"]["both"]["top1"] == pytest.approx([50.0, 50.0])
  # the tables are rewritten after each of the 6 sweep calls (bonn, xnor, bonn per
  # seed), each time with more finished runs, and once at the end
  assert len(written) == 7 and written == sorted(written) and written[0] < written[-1]


def test_recorded_runs_are_kept_when_their_directories_are_gone(tmp_path, stub_train):
  """reproduce.json outlives runs/: a run it records with the same settings is not
  trained again (marked "recorded"), one with other settings is, a fine-tune's
  recorded source is trained again (its checkpoint is gone), and --retrain_recorded
  trains them all."""
  import shutil
  calls = stub_train(lambda c: 0.5 + 0.01 * c.seed + 0.1 * (c.method == "xnor"))
  workdir, out = tmp_path / "runs", tmp_path / "out"
  common = ["--tables=bonn_t2,bonn_ft", "--steps=8", "--width=4",
            "--train_examples=256", "--test_examples=64", "--dataset=mnist",
            f"--workdir={workdir}", f"--out={out}"]
  trained = lambda: sorted(f"{c.method}:{c.seed}:{os.path.basename(c.init_from or '')}"
                           f":{c.get('bonn_lambda', 0)}" for c in calls)
  reproduce.main([*common, "--variants=both,xnor", "--seeds=0"])
  assert len(calls) == 2
  shutil.rmtree(workdir)  # a new machine: the results file only

  calls.clear()
  reproduce.main([*common, "--variants=both,xnor", "--seeds=0,1"])
  assert trained() == ["bonn:1::0.0001", "xnor:1::0"]  # seed 0 from the record
  rows = json.load(open(out / "reproduce.json"))["tables"]["bonn_t2"]["rows"]
  assert rows["both"]["top1"] == pytest.approx([50.0, 51.0])
  assert rows["xnor"]["top1"] == pytest.approx([60.0, 61.0])
  assert rows["both"]["status"][0].startswith("recorded (")
  assert rows["both"]["status"][1] == "done"
  shutil.rmtree(workdir)

  calls.clear()  # the fine-tune needs xnor_seed0's checkpoint: trained again first
  reproduce.main([*common, "--variants=ft_both", "--seeds=0,1"])
  assert trained() == ["bonn:0:xnor_seed0:0.0001", "bonn:1:xnor_seed1:0.0001",
                       "xnor:0::0", "xnor:1::0"]
  shutil.rmtree(workdir)

  calls.clear()
  reproduce.main([*common, "--variants=both", "--seeds=0,1", "--retrain_recorded"])
  assert trained() == ["bonn:0::0.0001", "bonn:1::0.0001"]
  shutil.rmtree(workdir)

  calls.clear()  # other steps: the records do not apply
  reproduce.main([*common[:1], "--steps=6", *common[2:], "--variants=both", "--seeds=0,1"])
  assert trained() == ["bonn:0::0.0001", "bonn:1::0.0001"]


@pytest.mark.parametrize("arg, message", [
    ("--tables=xnorpp_t1,nosuch", r"unknown table\(s\) \['nosuch'\]; allowed values "
     r"are a comma-separated subset of \['xnorpp_t1', 'cf_t3', 'cf_t4', 'bonn_t2', "
     r"'bonn_ft'\]"),
    ("--seeds=0,-1", "--seeds=0,-1: give distinct seeds >= 0"),
    ("--steps=0", "--steps=0: allowed values are integers >= 1"),
    ("--dataset=nosuch", r"--dataset=nosuch: allowed values are \["),
    ("--width=8", "--width=8: table cf_t3 has cross-filter group sizes up to 16"),
    ("--variants=both,case9", r"--variants=both,case9: unknown variant\(s\) "
     r"\['case9'\]; allowed values are a comma-separated subset of the variants of "
     r"xnorpp_t1,cf_t3,cf_t4,bonn_t2,bonn_ft: \['xnor', 'case1'"),
])
def test_bad_arguments(capsys, arg, message):
  with pytest.raises(SystemExit):
    reproduce.parse([arg])
  assert re.search(message, capsys.readouterr().err)
