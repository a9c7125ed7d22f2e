"""The quantizer registry: names, hyper-parameter checks, and the recorded forward
values that the packed path relies on (docs/quantizers.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnjax import quant

SIGNS = ("approx_sign", "identity_sign", "ste_sign", "swish_sign")
OTHERS = ("dorefa", "magnitude_aware_sign", "ste_heaviside", "ste_tern")


def test_one_registry_of_every_quantizer():
  assert set(quant.QUANTIZERS) == set(SIGNS + OTHERS)
  assert quant.sign_quantizers() == SIGNS
  for name in SIGNS:
    assert quant.is_sign(name)
  for name in OTHERS + (None, "sgn"):
    assert not quant.is_sign(name)
  info = quant.quantizer_info("ste_tern")
  assert info.larq == "SteTern" and info.values == "ternary" and not info.is_sign
  assert info.hyper_parameters == {"threshold": 0.05, "ternary_weight_networks": False,
                                   "clip": 1.0}
  assert quant.quantizer_info("dorefa").hyper_parameters == {"k_bit": 2,
                                                             "mode": "activations"}


def test_bits():
  assert [quant.bits(n) for n in SIGNS] == [1, 1, 1, 1]
  assert quant.bits("ste_heaviside") == quant.bits("magnitude_aware_sign") == 1
  assert quant.bits("ste_tern") == 2
  assert quant.bits("dorefa") == 2 and quant.bits("dorefa", k_bit=5, mode="weights") == 5


@pytest.mark.parametrize("name,kw,match", [
    ("dorefa", {"bits": 2}, r"'dorefa' takes no hyper-parameter 'bits'.*\['k_bit', 'mode'\]"),
    ("ste_tern", {"threshold_value": 0.1},
     r"'threshold_value'.*\['threshold', 'ternary_weight_networks', 'clip'\]"),
    ("identity_sign", {"clip": 1.0}, "'clip'.*allowed ones are none"),
    ("ste_sign", {"clip": [1.0]}, "clip=.*Python scalars"),
    ("sgn", {}, "Unknown quantizer 'sgn'.*ste_tern"),
])
def test_bad_hyper_parameters_name_them(name, kw, match):
  with pytest.raises(ValueError, match=match):
    quant.get_quantizer(name, **kw)
  with pytest.raises(ValueError, match=match):
    quant.check_kwargs(name, kw)


def test_register_refuses_taken_names_and_unknown_value_kinds():
  with pytest.raises(ValueError, match="already registered"):
    quant.register_quantizer("ste_sign", quant.ste_sign, values="sign")
  with pytest.raises(ValueError, match="values='pm1'.*'sign'"):
    quant.register_quantizer("new_sign", quant.ste_sign, values="pm1")
  assert "new_sign" not in quant.QUANTIZERS


# Each registered quantizer with a hyper-parameter setting that exercises it.
SETTINGS = [(n, {}) for n in SIGNS + OTHERS] + [
    ("ste_tern", {"ternary_weight_networks": True}), ("dorefa", {"k_bit": 3}),
    ("dorefa", {"k_bit": 3, "mode": "weights"})]


@pytest.mark.parametrize("name,kw", SETTINGS)
def test_forward_values_are_what_the_registry_records(name, kw):
  """What ``values`` says is what comes out: other code (the packed path) trusts it.
  (bfloat16 values: tests/quant/sign_test.py and zoo_test.py.)"""
  dtype = jnp.float32
  x = jnp.asarray(np.concatenate([
      np.random.default_rng(0).normal(size=(31, 4)).astype(np.float32) * 1.5,
      np.zeros((1, 4), np.float32)]), dtype)
  y = jax.jit(quant.get_quantizer(name, **kw))(x)
  assert y.dtype == dtype and y.shape == x.shape
  y = np.asarray(y, np.float32)
  kind = quant.quantizer_info(name).values
  if kind == "sign":
    np.testing.assert_array_equal(y, np.where(np.asarray(x, np.float32) >= 0, 1.0, -1.0))
  elif kind == "heaviside":
    assert set(np.unique(y)) == {0.0, 1.0}
  elif kind == "ternary":
    assert set(np.unique(y)) == {-1.0, 0.0, 1.0}
  elif kind == "scaled_sign":
    a = np.mean(np.abs(np.asarray(x, np.float32)), axis=0)
    np.testing.assert_allclose(np.abs(y), np.broadcast_to(a, y.shape), rtol=1e-6)
  elif kind == "k_bit":
    n = 2 ** kw.get("k_bit", 2) - 1
    lo = -1.0 if kw.get("mode") == "weights" else 0.0
    i = (y - lo) / (1.0 - lo) * n
    np.testing.assert_allclose(i, np.round(i), atol=1e-4)
    assert y.min() >= lo and y.max() <= 1.0
  else:
    raise AssertionError(kind)
