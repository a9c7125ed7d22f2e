"""Theoretical speed-ups against the papers' printed values."""

import pytest

from bnnjax import analysis


def test_xnorpp_pair_at_o256_3x3():
  assert analysis.xnorpp_speedup_xnor(3, 3, 256) == pytest.approx(63.70, abs=0.005)
  assert analysis.xnorpp_speedup_ours(3, 3, 256) == pytest.approx(63.97, abs=0.005)
  # exactly the printed formulas
  assert analysis.xnorpp_speedup_xnor(3, 3, 256) == 64 * 2304 / (2304 + 2 + 9)
  assert analysis.xnorpp_speedup_ours(3, 3, 256) == 64 * 2304 / 2305


def test_xnor_speedup_c256_3x3():
  assert analysis.xnor_speedup(256, 9) == pytest.approx(62.27, abs=0.005)
  assert analysis.xnor_speedup(256, 9, L=512) == pytest.approx(512 * 2304 / (2304 + 512))


def test_cf_speedup():
  assert analysis.cf_speedup(1, 256, 9, gamma=1.0) == analysis.xnor_speedup(256, 9)
  assert analysis.cf_speedup(10**9, 256, 9) == pytest.approx(122.24, abs=0.01)
  values = [analysis.cf_speedup(n, 64, 1) for n in (1, 2, 4, 8, 16)]
  assert values == sorted(values)  # grows with n
  with pytest.raises(ValueError, match="n must be"):
    analysis.cf_speedup(0, 64, 9)
