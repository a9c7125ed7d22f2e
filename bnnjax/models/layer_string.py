"""Parser of the papers' layer strings, e.g. ``"192-C5 + 2x(192-C1) + MP2 + L4096"``.

The cross-filter paper (§5.2) and the papers it compares with (TWN, TBN) write their
architectures as ``+``-separated items:

============================ ==============================================
item                         meaning
============================ ==============================================
``192-C5``, ``96C11``        conv with 192 (96) filters of size 5×5 (11×11)
``L4096``, ``1024-FC``       dense layer with 4096 (1024) units
``MP2``, ``AP2``, ``AP1``    max / average pool; its geometry is the model's
``Softmax``                  the classifier (dense to the classes) + softmax
``2x(...)``, ``2×(...)``     the bracketed items repeated twice
============================ ==============================================

:func:`parse_layers` turns a string into a flat tuple of :class:`Conv`,
:class:`Dense`, :class:`Pool` and :class:`Softmax`; what a pool name means (kernel,
stride, padding) is left to the model, since the papers define it per network.
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Conv:
  filters: int
  kernel: int


@dataclasses.dataclass(frozen=True)
class Dense:
  units: int


@dataclasses.dataclass(frozen=True)
class Pool:
  name: str  # "MP2", "AP2", "AP1", ...

  @property
  def kind(self) -> str:
    return "max" if self.name.startswith("MP") else "avg"


@dataclasses.dataclass(frozen=True)
class Softmax:
  """A classifier dense layer to the classes (the softmax itself is in the loss)."""


Layer = Conv | Dense | Pool | Softmax

_CONV = re.compile(r"^(\d+)-?C(\d+)$", re.I)
_DENSE = re.compile(r"^(?:L(\d+)|(\d+)-?FC)$", re.I)
_POOL = re.compile(r"^((?:MP|AP)\d+)$", re.I)
_REPEAT = re.compile(r"^(\d+)\s*[x×]\s*\((.*)\)$", re.I | re.S)
_FORMS = "'<n>-C<k>', '<n>C<k>', 'L<n>', '<n>-FC', 'MP<k>', 'AP<k>', 'Softmax', '<r>x(...)'"


def _split_top_level(s: str) -> list[str]:
  items, depth, cur = [], 0, []
  for ch in s:
    if ch == "(":
      depth += 1
    elif ch == ")":
      depth -= 1
      if depth < 0:
        raise ValueError(f"Unbalanced ')' in layer string {s!r}.")
    if ch == "+" and depth == 0:
      items.append("".join(cur).strip())
      cur = []
    else:
      cur.append(ch)
  if depth:
    raise ValueError(f"Unbalanced '(' in layer string {s!r}.")
  items.append("".join(cur).strip())
  return items


def parse_layers(layers: str) -> tuple[Layer, ...]:
  """Parses a layer string into a flat tuple of layers (repetitions expanded).

  >>> parse_layers("2x(8-C3) + MP2 + L16")
  (Conv(filters=8, kernel=3), Conv(filters=8, kernel=3), Pool(name='MP2'), Dense(units=16))
  """
  s = layers.strip().strip("\"'“”")
  out: list[Layer] = []
  for item in _split_top_level(s):
    if not item:
      raise ValueError(f"Empty item in layer string {layers!r}.")
    if m := _REPEAT.match(item):
      out.extend(parse_layers(m.group(2)) * int(m.group(1)))
    elif m := _CONV.match(item):
      out.append(Conv(int(m.group(1)), int(m.group(2))))
    elif m := _DENSE.match(item):
      out.append(Dense(int(m.group(1) or m.group(2))))
    elif m := _POOL.match(item):
      out.append(Pool(m.group(1).upper()))
    elif item.lower() == "softmax":
      out.append(Softmax())
    else:
      raise ValueError(
          f"Unknown item {item!r} in layer string {layers!r}; allowed forms are "
          f"{_FORMS}.")
  return tuple(out)
