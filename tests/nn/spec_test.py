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


# --------------------------------------------------------- quantizer hyper-parameters
def test_quantizer_kwargs_are_sorted_pairs_from_a_dict_or_pairs():
  a = nn.QuantSpec(kernel_quantizer="dorefa",
                   kernel_quantizer_kwargs={"mode": "weights", "k_bit": 3})
  b = nn.QuantSpec(kernel_quantizer="dorefa",
                   kernel_quantizer_kwargs=(("k_bit", 3), ("mode", "weights")))
  assert a == b and hash(a) == hash(b)
  assert a.kernel_quantizer_kwargs == (("k_bit", 3), ("mode", "weights"))


@pytest.mark.parametrize("kwargs,match", [
    (dict(kernel_quantizer="dorefa", kernel_quantizer_kwargs={"k_bit": 0}),
     r"QuantSpec.kernel_quantizer_kwargs=\{'k_bit': 0\}: dorefa: k_bit=0; allowed values "
     r"are integers 1..16"),
    (dict(input_quantizer="ste_tern", input_quantizer_kwargs={"delta": 0.1}),
     r"input_quantizer_kwargs=.*'ste_tern' takes no hyper-parameter 'delta'; allowed "
     r"ones are \['threshold'"),
    (dict(kernel_quantizer_kwargs={"clip": 0.5}), "is set but kernel_quantizer is None"),
    (dict(kernel_quantizer="ste_sign", kernel_quantizer_kwargs=0.5),
     "kernel_quantizer_kwargs=0.5: allowed values are a dict"),
])
def test_bad_quantizer_kwargs_name_the_field(kwargs, match):
  with pytest.raises(ValueError, match=match):
    nn.QuantSpec(**kwargs)


def _config(**fields):
  from configs import common
  c = common.base_config()
  c.update(fields)
  return c


def test_config_sets_quantizer_hyper_parameters():
  from bnnjax import methods
  spec = methods.from_config(_config(
      method="xnor", input_quantizer="dorefa", input_quantizer_kwargs={"k_bit": 3},
      kernel_quantizer="ste_tern", kernel_quantizer_kwargs={"threshold": 0.1}))
  assert spec.input_quantizer_kwargs == (("k_bit", 3),)
  assert spec.kernel_quantizer_kwargs == (("threshold", 0.1),)
  # BWN keeps the input in float: the input quantizer and its kwargs are unused.
  spec = methods.from_config(_config(method="bwn", input_quantizer_kwargs={"k_bit": 3},
                                     kernel_quantizer="dorefa",
                                     kernel_quantizer_kwargs={"mode": "weights"}))
  assert spec.input_quantizer is None and spec.input_quantizer_kwargs == ()
  assert spec.kernel_quantizer_kwargs == (("mode", "weights"),)
  assert nn.method_spec("bwn", kernel_quantizer="ste_sign",
                        kernel_quantizer_kwargs={"clip": 0.5}).kernel_quantizer_kwargs == (
                            ("clip", 0.5),)


@pytest.mark.parametrize("fields,match", [
    (dict(kernel_quantizer="dorefa", kernel_quantizer_kwargs={"k_bit": 99}),
     r"^config.kernel_quantizer_kwargs=\{'k_bit': 99\}: dorefa: k_bit=99"),
    (dict(kernel_quantizer_kwargs={"k_bit": 2}),  # the default ste_sign takes clip only
     r"^config.kernel_quantizer_kwargs=.*'ste_sign' takes no hyper-parameter 'k_bit'"),
    (dict(kernel_quantizer="ste_tern", binary_compute="packed"),
     r"^config.kernel_quantizer='ste_tern' is not a ±1 sign.*compute='packed'"),
    (dict(input_quantizer="ste_heaviside", binary_compute="packed"),
     r"^config.input_quantizer='ste_heaviside' is not a ±1 sign"),
])
def test_config_errors_name_the_field(fields, match):
  from bnnjax import methods
  with pytest.raises(ValueError, match=match):
    methods.from_config(_config(method="xnor", **fields))


def test_validation_checks_the_kwargs_fields():
  from bnnjax.train import validation
  validation.validate(_config(kernel_quantizer_kwargs={"k_bit": 2, "mode": "weights"}))
  with pytest.raises(ValueError, match=r"config.kernel_quantizer_kwargs.k_bit=\[2\]"):
    validation.validate(_config(kernel_quantizer_kwargs={"k_bit": [2]}))
  bad = _config().to_dict()
  bad["input_quantizer_kwargs"] = 3
  with pytest.raises(ValueError, match="config.input_quantizer_kwargs=3; allowed values are a dict"):
    validation.validate(bad)
