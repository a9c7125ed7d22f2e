"""The layer-string parser."""

import pytest

from bnnjax.models import sequential
from bnnjax.models.layer_string import Conv
from bnnjax.models.layer_string import Dense
from bnnjax.models.layer_string import Pool
from bnnjax.models.layer_string import Softmax
from bnnjax.models.layer_string import parse_layers


def test_nin():
  assert parse_layers(sequential.NIN_LAYERS) == (
      Conv(192, 5), Conv(160, 1), Conv(96, 1), Pool("MP2"), Conv(192, 5), Conv(192, 1),
      Conv(192, 1), Pool("AP2"), Conv(192, 3), Conv(192, 1), Conv(10, 1), Pool("AP1"))


def test_alexnet_and_vgg7_spellings():
  assert parse_layers(sequential.ALEXNET_PAPER_LAYERS) == (
      Conv(96, 11), Conv(256, 5), Conv(384, 3), Conv(384, 3), Conv(256, 3), Pool("MP2"),
      Dense(4096), Dense(4096), Dense(1000))
  assert parse_layers(sequential.VGG7_LAYERS) == (
      Conv(128, 3), Conv(128, 3), Pool("MP2"), Conv(256, 3), Conv(256, 3), Pool("MP2"),
      Conv(512, 3), Conv(512, 3), Pool("MP2"), Dense(1024), Softmax())


def test_nested_repetition_and_quotes():
  assert parse_layers("”2x(8-C3 + 2×(L4)) + ap2”") == (
      Conv(8, 3), Dense(4), Dense(4), Conv(8, 3), Dense(4), Dense(4), Pool("AP2"))
  assert Pool("MP2").kind == "max" and Pool("AP1").kind == "avg"


@pytest.mark.parametrize("bad,match", [
    ("192-C5 + 3x3", "Unknown item '3x3'"),
    ("2x(8-C3", "Unbalanced"),
    ("8-C3)", "Unbalanced"),
    ("8-C3 + + L4", "Empty item"),
])
def test_errors(bad, match):
  with pytest.raises(ValueError, match=match):
    parse_layers(bad)
