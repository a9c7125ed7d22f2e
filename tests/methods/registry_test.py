"""The method registry: names and spellings, resolving a config once with errors that
name the config field, labels, and registration rules."""

import pytest
from flax import nnx

from bnnjax import methods
from bnnjax import nn


@pytest.mark.parametrize("text,parsed", [
    ("XNOR-CF-4", ("xnor_cf", 4)), ("bw_cf2", ("bw_cf", 2)), ("XNOR++3", ("xnorpp", 3)),
    ("xnorpp_1", ("xnorpp", 1)), ("BWN", ("bwn", None)), ("xnor", ("xnor", None))])
def test_parse_reads_the_papers_spellings(text, parsed):
  assert methods.parse(text) == parsed


def test_builtin_names_and_their_modules():
  assert methods.names() == ("fp", "bwn", "xnor", "bw_cf", "xnor_cf", "xnorpp", "bonn")
  assert methods.names(number_field="group_size") == ("bw_cf", "xnor_cf")
  assert methods.get("XNOR-CF-4") is methods.cross_filter.METHOD
  assert methods.get("bonn") is methods.bonn.METHOD


@pytest.mark.parametrize("method", ["fp", "bwn", "xnor", "bw_cf_2", "xnor_cf_4",
                                    "xnorpp_1", "xnorpp_2", "xnorpp_3", "xnorpp_4", "bonn"])
def test_label_is_the_name_resolved_from(method):
  spec = methods.resolve(method)
  assert methods.label(spec) == method
  assert methods.for_spec(spec) is methods.get(method)


def test_labels_of_specs_without_a_preset():
  sign = nn.QuantSpec(input_quantizer="ste_sign", kernel_quantizer="ste_sign")
  assert methods.label(sign) == "sign"
  xnor_no_k = nn.QuantSpec(input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                           weight_scale="xnor")
  assert methods.label(xnor_no_k) == "xnor-K"
  assert methods.label(nn.QuantSpec(input_quantizer="ste_sign")) == "bin_input"


@pytest.mark.parametrize("method,fields,message", [
    ("foo", {}, r"config.method='foo' is not a known method; allowed values are \['fp'"),
    ("bw_cf", {}, r"config.method='bw_cf' needs config.group_size"),
    ("xnor_cf_4", {"group_size": 2}, r"config.method='xnor_cf_4' conflicts with "
                                     r"config.group_size=2"),
    ("xnorpp", {"gamma_case": 5}, r"^config.gamma_case=5; allowed values are \[1, 2, 3, 4\]"),
    ("xnorpp_5", {}, r"^config.method='xnorpp_5': gamma_case=5; allowed"),
    ("xnor", {"input_quantizer": "sgn"}, r"^config.input_quantizer='sgn' is not a known"),
    ("xnor", {"binary_compute": "fast"}, r"^config.binary_compute='fast'; allowed"),
    ("fp", {"binary_compute": "fast"}, r"^config.binary_compute='fast'; allowed"),
    ("bwn_2", {}, r"'bwn' takes no number"),
])
def test_resolve_errors_name_the_config_field(method, fields, message):
  with pytest.raises(ValueError, match=message):
    methods.resolve(method, **fields)


def test_layer_errors_name_the_config_field_that_set_the_value():
  with pytest.raises(methods.SpecError) as info:
    nn.QuantConv(4, 8, 3, spec=methods.resolve("xnor_cf", group_size=3), rngs=nnx.Rngs(0))
  err = info.value
  assert (err.field, err.value) == ("group_size", 3)
  by_field = methods.config_error(err, {"method": "xnor_cf", "group_size": 3})
  assert str(by_field).startswith("config.group_size=3 does not divide the number of "
                                  "filters c_out=8 of QuantConv(4 -> 8, 3x3)")
  by_name = methods.config_error(err, {"method": "xnor_cf_3", "group_size": None})
  assert str(by_name).startswith("config.method='xnor_cf_3': group_size=3 does not divide")


def test_resolve_is_method_spec_and_fp_ignores_compute():
  assert methods.resolve("xnor", binary_compute="packed") == nn.method_spec(
      "xnor", compute="packed")
  assert methods.resolve("fp", binary_compute="packed") == nn.FP
  config = {"method": "bw_cf", "group_size": 4, "pad_value": None}
  assert methods.from_config(config) == nn.method_spec("bw_cf_4")


def test_register_refuses_taken_and_numbered_names():
  class Again(methods.xnor.XNORNet):
    names = ("xnor",)
  with pytest.raises(ValueError, match="already registered"):
    methods.register(Again())

  class Numbered(methods.fp.FullPrecision):
    names = ("fp2",)
  with pytest.raises(ValueError, match="not end in a digit"):
    methods.register(Numbered())
  assert methods.names()[-1] == "bonn"  # nothing was added
