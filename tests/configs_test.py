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
