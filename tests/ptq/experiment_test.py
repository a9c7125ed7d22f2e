"""experiments.ptq end to end at a tiny size on real embedded data; configs/ptq_resnet18."""

import json
import os

import numpy as np
import pytest

from bnnjax import ptq
from configs import ptq_resnet18
from experiments import ptq as experiment


def tiny_config():
  c = ptq_resnet18.get_config("dataset=mnist,width=2,test_examples=64")
  c.num_train_steps = 3
  c.batch_size = 16
  c.num_test_examples = 64
  c.eval_batch_size = 64
  c.progress = False
  c.tensorboard = False
  c.ptq.bits = (8, 2)
  c.ptq.figure_bits = 2
  c.ptq.grouping_bits = 2
  c.ptq.eval_batch_size = 48  # 64 = 48 + a padded batch of 16
  return c


def test_config_defaults_and_arguments():
  c = ptq_resnet18.get_config()
  assert c.method == "fp" and c.model_name == "resnet18"
  assert c.dataset == "fashion_mnist" and c.model_kwargs.width == 16
  assert c.ptq.bits == (8, 7, 6, 5, 4, 3, 2)
  assert tuple(c.ptq.schemes) == ptq.SCHEMES
  assert tuple(c.ptq.granularities) == ptq.GRANULARITIES
  assert tuple(c.ptq.groups) == ptq.DEFAULT_GROUPS
  experiment.check_ptq_config(c.ptq)
  assert "ptq" not in experiment.train_config(c)
  c.lock()  # as config_flags hands it over
  assert "ptq" not in experiment.train_config(c) and "ptq" in c
  paper = ptq_resnet18.get_config("paper")
  assert paper.dataset == "cifar10" and paper.model_kwargs.width == 64
  assert paper.ptq.num_test_examples is None
  with pytest.raises(ValueError, match="'bits'.*allowed"):
    ptq_resnet18.get_config("bits=3")


def test_bad_sweep_fields_name_themselves():
  for field, value, match in (("schemes", ("log",), "config.ptq.schemes"),
                              ("bits", (8, 1), "config.ptq.bits"),
                              ("granularities", ("per_row",), "config.ptq.granularities"),
                              ("groups", ("kernels",), "groups="),
                              ("figure_bits", 5, "config.ptq.figure_bits")):
    c = tiny_config()
    c.ptq[field] = value
    with pytest.raises(ValueError, match=match):
      experiment.check_ptq_config(c.ptq)


def test_a_bad_figure_layer_fails_before_training(tmp_path):
  c = tiny_config()
  c.ptq.figure_layer = "blocks/2/conv/kernel"
  with pytest.raises(ValueError, match=r"figure_layer=.*blocks/2/unit2/conv/kernel"):
    experiment.run(c, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_end_to_end_tiny(tmp_path, capsys):
  workdir = str(tmp_path / "run")
  report = experiment.run(tiny_config(), workdir, command="test")
  out = os.path.join(workdir, "ptq")
  saved = json.load(open(os.path.join(out, "ptq.json")))
  assert saved["float"]["count"] == 64
  assert len(saved["rows"]) == 3 * 2 * 2
  for r in saved["rows"]:
    assert 0 <= r["top1"] <= 100
    conf = np.asarray(r["confusion"])
    assert conf.shape == (10, 10) and conf.sum() == 64
    assert r["top1"] == pytest.approx(100 * np.trace(conf) / 64)
    s = r["storage"]
    assert s["packed"] < s["float32"] and s["packed_lzma"] > 0
    assert r["grouping"]["merges"][0]["accuracy"] >= r["grouping"]["accuracy"]
  # fewer bits, smaller packed file
  by = {(r["scheme"], r["granularity"], r["bits"]): r for r in saved["rows"]}
  for scheme in ptq.SCHEMES:
    assert (by[(scheme, "per_tensor", 2)]["storage"]["packed"]
            < by[(scheme, "per_tensor", 8)]["storage"]["packed"])
  tensors = json.load(open(os.path.join(out, "ptq_tensors.json")))
  assert set(tensors) == {f"{s}/{g}/{b}" for s, g, b in by}
  assert "blocks/2/unit2/conv/kernel" in tensors["symmetric/per_channel/2"]
  md = open(os.path.join(out, "ptq.md")).read()
  assert "| symmetric | per channel |" in md and "*seed: asymmetric*" in md
  for png in report["plots"]:
    assert os.path.getsize(os.path.join(out, png)) > 1000

  # Results are never replaced silently; the finished run is loaded, not retrained.
  with pytest.raises(FileExistsError, match="--overwrite"):
    experiment.run(tiny_config(), workdir)
  capsys.readouterr()
  c = tiny_config()
  c.ptq.schemes = ("power_of_two",)
  c.ptq.histogram_scheme = "power_of_two"
  c.ptq.granularities = ("per_channel",)
  experiment.run(c, workdir, ptq_dir="again")
  assert "Using the trained model" in capsys.readouterr().out
  assert json.load(open(os.path.join(workdir, "ptq", "ptq.json")))["date"] == saved["date"]
  assert os.path.exists(os.path.join(workdir, "again", "ptq.md"))
