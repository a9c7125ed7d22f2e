"""Every config builds for its default and paper arguments; bad arguments fail clearly."""

import glob
import importlib
import os

import pytest

from bnnjax import models
from bnnjax import nn
from bnnjax.train import optim

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(
    os.path.join(os.path.dirname(__file__), "..", "configs", "*.py"))
    if not os.path.basename(p).startswith(("_", "common")))


def test_all_paper_configs_present():
  assert {"bonn_resnet18", "bonn_wrn22", "xnor_resnet18", "xnorpp_resnet18", "cf_nin",
          "cf_vgg7", "cf_alexnet", "cf_resnet18", "fp_resnet18", "fp_wrn22"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", [None, "paper"])
def test_config_is_consistent(name, arg):
  c = importlib.import_module(f"configs.{name}").get_config(arg)
  assert c.model_name in models.MODELS
  nn.method_spec(c.method, group_size=c.group_size, gamma_case=c.gamma_case)
  optim.validate(c)
  assert set(c.model_kwargs) <= set(models.model_kwargs(c.model_name))
  if arg == "paper":
    assert c.dataset in ("imagenet2012", "cifar10")
  else:
    assert c.dataset == ("fashion_mnist" if name == "ptq_resnet18" else "mnist")


@pytest.mark.parametrize("name,arg", [
    ("xnorpp_resnet18", "case=3"), ("cf_nin", "method=bw_cf,n=4,first,last"),
    ("bonn_wrn22", "paper,wide,dataset=cifar100"), ("cf_resnet18", "method=xnor")])
def test_arguments(name, arg):
  c = importlib.import_module(f"configs.{name}").get_config(arg)
  spec = nn.method_spec(c.method, group_size=c.group_size, gamma_case=c.gamma_case)
  assert spec is not None


def test_bad_arguments_name_themselves():
  from configs import cf_nin, xnorpp_resnet18
  with pytest.raises(ValueError, match="'colour'.*allowed"):
    xnorpp_resnet18.get_config("colour=red")
  with pytest.raises(ValueError, match="n=4 applies only"):
    cf_nin.get_config("method=xnor,n=4")


def test_bonn_fields_drive_the_loss_weights():
  from configs import bonn_resnet18
  c = bonn_resnet18.get_config()
  c.bonn_lambda = 0.2
  c.bonn_theta = 0.4
  terms = c.loss_terms.to_dict()
  assert terms["bayesian_kernel"]["weight"] == pytest.approx(0.1)
  assert terms["bayesian_feature"]["weight"] == pytest.approx(0.2)
  assert c.group_lr.Modulation == pytest.approx(c.lr / 10)


def test_bonn_kernel_loss_is_decoupled_under_adam_and_coupled_under_the_papers_sgd():
  """docs/bonn.md#investigation: inside Adam the kernel loss freezes the binary weights;
  the CPU defaults apply it after Adam, :paper (SGD, the paper's form) in the gradient."""
  from configs import bonn_resnet18, bonn_wrn22
  for module in (bonn_resnet18, bonn_wrn22):
    c = module.get_config()
    assert c.optimizer == "adam" and c.bonn_kernel_decoupled
    assert c.loss_terms.bayesian_kernel.decoupled
    p = module.get_config("paper")
    assert p.optimizer == "sgd" and not p.bonn_kernel_decoupled
    assert not p.loss_terms.bayesian_kernel.decoupled


def test_validation_checks_every_base_config_field_and_every_config_passes():
  from bnnjax.train import validation
  from configs import common
  assert set(common.base_config().keys()) <= validation.known_fields()
  for name in CONFIGS:
    for arg in (None, "paper"):
      c = importlib.import_module(f"configs.{name}").get_config(arg)
      validation.validate(c)


def _docstring_examples():
  """``--config=configs/x.py:arg`` and ``--config.field=value`` in the configs' and
  commands' docstrings and the README."""
  import re
  root = os.path.join(os.path.dirname(__file__), "..")
  texts = [open(p).read() for p in glob.glob(os.path.join(root, "configs", "*.py"))
           + glob.glob(os.path.join(root, "experiments", "*.py"))
           + [os.path.join(root, "README.md")]]
  files = set()
  overrides = set()
  for text in texts:
    files |= set(re.findall(r"--config=(configs/\w+\.py(?::[\w=,.]+)?)", text))
    overrides |= set(re.findall(r"--config\.([a-z_.]+)=(\"[^\"]+\"|[\w.+-]+)", text))
  overrides = {(k, v) for k, v in overrides if k != "field" and v != "..."}  # placeholders
  files = {f for f in files if not f.startswith("configs/x.py")}
  return sorted(files), sorted(overrides)


def test_docstring_examples_are_accepted():
  """Each documented config argument builds and validates; each documented override
  applies to a config that has the field and still validates (and for ``ptq.*``,
  passes experiments.ptq's checks)."""
  import ast
  from bnnjax.train import validation
  from experiments import ptq
  files, overrides = _docstring_examples()
  assert "configs/xnorpp_resnet18.py:case=3,paper" in files
  assert ("ptq.bits", '"(8,4,3)"') in overrides
  for spec in files:
    path, _, arg = spec.partition(":")
    c = importlib.import_module("configs." + os.path.basename(path)[:-3]).get_config(
        arg or None)
    validation.validate(ptq.train_config(c))
  for key, text in overrides:
    value = text.strip('"')
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass
    name = "ptq_resnet18" if key.startswith("ptq.") else (
        "bonn_resnet18" if key.startswith("bonn") else "xnor_resnet18")
    c = importlib.import_module(f"configs.{name}").get_config()
    *parents, leaf = key.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = type(node[leaf])(value) if isinstance(node[leaf], float) else value
    if key.startswith("ptq."):
      ptq.check_ptq_config(c.ptq)
    validation.validate(ptq.train_config(c))
