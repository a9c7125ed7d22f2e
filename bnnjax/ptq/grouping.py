"""Class grouping: merge the classes a quantized model confuses (seed §IV.a, Table 2).

The seed merges *cat* and *dog* into "small pets" and re-scores a 3-bit model (85.93 →
88.2). Here the merge is found, not chosen: average-linkage agglomerative clustering
[rec] on the symmetrised confusion rates

    ``S_ij = (C_ij / Σ_k C_ik + C_ji / Σ_k C_jk) / 2``   (``i ≠ j``)

(rows of ``C`` are true classes, columns predictions): the two groups with the highest
mean ``S`` between their members merge first. Re-scoring counts a prediction as
correct when it falls in the true class's group: ``Σ_g Σ_{i,j∈g} C_ij / Σ C``.
"""

from __future__ import annotations

import numpy as np


def symmetrised_confusion(confusion) -> np.ndarray:
  """``S`` of the module docstring (zero diagonal; a class never seen has rate 0).

  >>> symmetrised_confusion([[8, 2], [0, 10]]).tolist()
  [[0.0, 0.1], [0.1, 0.0]]
  """
  c = np.asarray(confusion, np.float64)
  if c.ndim != 2 or c.shape[0] != c.shape[1]:
    raise ValueError(f"confusion must be a square matrix, got shape {c.shape}.")
  rows = c.sum(axis=1, keepdims=True)
  rates = np.divide(c, rows, out=np.zeros_like(c), where=rows > 0)
  s = (rates + rates.T) / 2
  np.fill_diagonal(s, 0.0)
  return s


def agglomerate(confusion) -> list[dict]:
  """The full average-linkage merge sequence of the classes of ``confusion``.

  Returns:
    ``num_classes − 1`` merges, first to last; each ``{"groups": [...], "merged":
    [a, b], "linkage": s}``: the partition of the classes after this merge (sorted
    lists of class indices), the two groups just merged, and their mean
    symmetrised confusion. Ties break towards the lowest class indices.

  >>> [m["merged"] for m in agglomerate([[9, 1, 0], [3, 7, 0], [0, 1, 9]])]
  [[[0], [1]], [[0, 1], [2]]]
  """
  s = symmetrised_confusion(confusion)
  groups = [[i] for i in range(s.shape[0])]
  merges = []
  while len(groups) > 1:
    best = None
    for a in range(len(groups)):
      for b in range(a + 1, len(groups)):
        link = float(np.mean(s[np.ix_(groups[a], groups[b])]))
        if best is None or link > best[0]:
          best = (link, a, b)
    link, a, b = best
    merged = [groups[a], groups[b]]
    groups = [g for i, g in enumerate(groups) if i not in (a, b)]
    groups.append(sorted(merged[0] + merged[1]))
    groups.sort()
    merges.append({"groups": [list(g) for g in groups], "merged": merged,
                   "linkage": link})
  return merges


def grouped_accuracy(confusion, groups) -> float:
  """Accuracy when any prediction inside the true class's group counts as correct.

  ``groups`` is a partition of the classes (lists of indices; classes left out are
  groups of their own).

  >>> grouped_accuracy([[8, 2], [1, 9]], [[0, 1]]), grouped_accuracy([[8, 2], [1, 9]], [])
  (1.0, 0.85)
  """
  c = np.asarray(confusion, np.float64)
  label = np.arange(c.shape[0])
  for gid, g in enumerate(groups):
    label[list(g)] = c.shape[0] + gid
  same = label[:, None] == label[None, :]
  total = c.sum()
  return float(c[same].sum() / total) if total > 0 else 0.0


def group_classes(confusion, *, num_merges: int) -> dict:
  """The first ``num_merges`` merges of :func:`agglomerate` and the re-scored
  accuracy after each.

  Returns:
    ``{"accuracy": plain top-1, "merges": [{"merged", "groups", "linkage",
    "accuracy"}, ...]}`` with ``groups`` holding only the groups of 2 or more classes.
  """
  c = np.asarray(confusion, np.float64)
  if not 0 <= num_merges < c.shape[0]:
    raise ValueError(f"num_merges={num_merges}; allowed values are 0 to "
                     f"{c.shape[0] - 1} for {c.shape[0]} classes.")
  out = {"accuracy": grouped_accuracy(c, []), "merges": []}
  for m in agglomerate(c)[:num_merges]:
    multi = [g for g in m["groups"] if len(g) > 1]
    out["merges"].append({"merged": m["merged"], "groups": multi, "linkage": m["linkage"],
                          "accuracy": grouped_accuracy(c, multi)})
  return out
