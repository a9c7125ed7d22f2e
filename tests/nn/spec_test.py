"""QuantSpec validation and the named-method presets."""

import pytest

from bnnjax import nn


@pytest.mark.parametrize("method,expected", [
    ("fp", nn.QuantSpec()),
    ("BWN", nn.QuantSpec(kernel_quantizer="ste_sign", weight_scale="xnor")),
    ("xnor", nn.QuantSpec(input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                          weight_scale="xnor", activation_scale=True)),
    ("BW-CF-4", nn.QuantSpec(kernel_quantizer="ste_sign", weight_scale="cross_filter",
                             group_size=4)),
    ("xnor_cf16", nn.QuantSpec(input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                               weight_scale="cross_filter", group_size=16,
                               activation_scale=True)),
    ("XNOR++3", nn.QuantSpec(input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                             weight_scale="xnorpp", gamma_case=3)),
])
def test_presets(method, expected):
  assert nn.method_spec(method) == expected


def test_number_by_keyword():
  assert nn.method_spec("bw_cf", group_size=2).group_size == 2
  assert nn.method_spec("xnorpp", gamma_case=4).gamma_case == 4


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_quantizer="sgn"), "input_quantizer.*ste_sign"),
    (dict(kernel_quantizer="foo"), "kernel_quantizer"),
    (dict(weight_scale="alpha"), "weight_scale.*cross_filter"),
    (dict(weight_scale="xnor"), "kernel_quantizer"),
    (dict(kernel_quantizer="ste_sign", weight_scale="xnorpp", gamma_case=5), "gamma_case"),
    (dict(group_size=0), "group_size"),
    (dict(activation_scale=True), "input_quantizer"),
    (dict(pad_value=-1), "pad_value.*0 or 1"),
])
def test_bad_spec_names_field(kwargs, match):
  with pytest.raises(ValueError, match=match):
    nn.QuantSpec(**kwargs)


@pytest.mark.parametrize("method,match", [
    ("xnorr", "not a known method"), ("bw_cf", "group_size"), ("xnorpp", "gamma_case"),
    ("bwn_2", "takes no number"), ("xnorpp_7", "gamma_case")])
def test_bad_methods(method, match):
  with pytest.raises(ValueError, match=match):
    nn.method_spec(method)


def test_spec_is_frozen_keyword_only_and_hashable():
  spec = nn.method_spec("xnor")
  with pytest.raises(Exception):
    spec.group_size = 2  # type: ignore[misc]
  with pytest.raises(TypeError):
    nn.QuantSpec("ste_sign")  # type: ignore[misc]
  assert hash(spec) == hash(nn.method_spec("xnor"))
