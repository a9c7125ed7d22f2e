"""Bit-efficiency metrics and class grouping against hand-computed values."""

import math

import numpy as np
import pytest

from bnnjax import ptq


def test_tensor_metrics_by_hand():
  # symmetric 3 bits of [-1.2, -0.31, 0.4, 2]: codes [-2, 0, 1, 3], x̂ = [-4/3, 0, 2/3, 2]
  x = np.array([-1.2, -0.31, 0.4, 2.0], np.float32)
  m = ptq.tensor_metrics(x, ptq.quantize(x, scheme="symmetric", bits=3))
  assert m["levels_used"] == 4 and m["level_fraction"] == 0.5
  assert m["bit_levels"] == 2.0
  assert m["range_per_bit"] == pytest.approx(math.log2(2 / (2 / 3)) / 3, rel=1e-6)
  err = np.array([-4 / 3 + 1.2, 0.31, 2 / 3 - 0.4, 0.0])
  assert m["relative_error"] == pytest.approx(
      np.linalg.norm(err) / np.linalg.norm(x.astype(np.float64)), rel=1e-5)
  assert m["size"] == 4


def test_quartile_error_by_hand():
  # quartiles (linear interpolation) of [0..4]: 1, 2, 3 (IQR 2); of x̂: 0, 2, 4.
  x = np.arange(5.0)
  x_hat = np.array([0.0, 0.0, 2.0, 4.0, 4.0])
  assert ptq.quartile_error(x, x_hat) == pytest.approx((1 + 0 + 1) / 3 / 2)
  # per channel (last axis): channel 1 is exact, channel 0 as above
  xc, hc = np.stack([x, x], -1), np.stack([x_hat, x], -1)
  np.testing.assert_allclose(ptq.channel_quartiles(xc), [[1, 2, 3], [1, 2, 3]])
  assert ptq.quartile_error(xc, hc) == pytest.approx((2 / 6) / 2)
  assert ptq.quartile_error(np.zeros(4), np.zeros(4)) == 0.0
  assert ptq.quartile_error(np.ones(4), np.full(4, 0.5)) == pytest.approx(0.5)


def _host_quantize(x, scheme, bits):
  """Per-tensor quantization on the host (the numpy path of quantize_params)."""
  from bnnjax.ptq.quantizers import quantize_arrays
  values, codes, scale, zero = quantize_arrays(np.asarray(x, np.float32), bits,
                                               scheme=scheme, axes=tuple(range(x.ndim)),
                                               xp=np)
  return ptq.Quantized(values=values, codes=codes, scale=scale, zero_point=zero,
                       scheme=scheme, bits=bits)


def test_metrics_of_degenerate_tensors():
  for x in (np.zeros((3, 2)), np.full((3, 2), 0.7), np.array([0.3])):
    for scheme in ptq.SCHEMES:
      m = ptq.tensor_metrics(x, _host_quantize(x, scheme, 2))
      assert all(np.isfinite(v) for v in m.values()), (x, scheme, m)
      assert m["range_per_bit"] == 0.0


def test_summarize():
  per = {"a": {"x": 1.0, "size": 3}, "b": {"x": 3.0, "size": 5}}
  assert ptq.summarize(per) == {"x": 2.0}
  assert ptq.summarize(per, ["b"]) == {"x": 3.0}
  assert ptq.summarize(per, []) == {}


# Four classes: 1 and 3 are confused most, then 0 and 2; rows are true classes.
CONFUSION = np.array([
    [80, 2, 15, 3],
    [1, 70, 0, 29],
    [10, 0, 88, 2],
    [0, 21, 1, 78],
])


def test_symmetrised_confusion_by_hand():
  s = ptq.symmetrised_confusion(CONFUSION)
  assert s[1, 3] == pytest.approx((0.29 + 0.21) / 2)
  assert s[0, 2] == pytest.approx((0.15 + 0.10) / 2)
  np.testing.assert_allclose(s, s.T)
  np.testing.assert_array_equal(np.diag(s), 0.0)
  with pytest.raises(ValueError, match="square"):
    ptq.symmetrised_confusion(np.ones((2, 3)))


def test_class_grouping_by_hand():
  merges = ptq.agglomerate(CONFUSION)
  assert [m["merged"] for m in merges] == [[[1], [3]], [[0], [2]], [[0, 2], [1, 3]]]
  assert merges[0]["linkage"] == pytest.approx(0.25)
  assert merges[1]["groups"] == [[0, 2], [1, 3]]
  # average linkage of {0,2} and {1,3}: mean of S01, S03, S21, S23
  s = ptq.symmetrised_confusion(CONFUSION)
  assert merges[2]["linkage"] == pytest.approx(np.mean([s[0, 1], s[0, 3], s[2, 1], s[2, 3]]))
  out = ptq.group_classes(CONFUSION, num_merges=2)
  total = CONFUSION.sum()
  assert out["accuracy"] == pytest.approx((80 + 70 + 88 + 78) / total)
  assert out["merges"][0]["groups"] == [[1, 3]]
  assert out["merges"][0]["accuracy"] == pytest.approx(
      (80 + 88 + 70 + 29 + 21 + 78) / total)
  assert out["merges"][1]["accuracy"] == pytest.approx(
      (80 + 15 + 10 + 88 + 70 + 29 + 21 + 78) / total)
  with pytest.raises(ValueError, match="num_merges"):
    ptq.group_classes(CONFUSION, num_merges=4)


def test_agglomerate_matches_scipy_average_linkage():
  from scipy.cluster import hierarchy
  from scipy.spatial.distance import squareform
  rng = np.random.default_rng(0)
  c = rng.integers(0, 30, size=(7, 7)) + np.diag(rng.integers(100, 200, size=7))
  s = ptq.symmetrised_confusion(c)
  z = hierarchy.linkage(squareform(1.0 - s, checks=False), method="average")
  ours = ptq.agglomerate(c)
  np.testing.assert_allclose([1.0 - m["linkage"] for m in ours], z[:, 2], rtol=1e-12)
  # the same clusters after each merge
  for k, m in enumerate(ours, start=1):
    labels = hierarchy.fcluster(z, t=7 - k, criterion="maxclust")
    theirs = sorted(sorted(np.flatnonzero(labels == l).tolist()) for l in set(labels))
    assert m["groups"] == theirs
