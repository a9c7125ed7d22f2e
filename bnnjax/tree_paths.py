"""Names of parameters: a pytree or NNX graph path written as one ``"a/b/0/c"`` string.

The same name is used for a tensor everywhere it is shown or stored: the trainer's
per-layer metrics and latent histograms, checkpoint items, packed-model files,
post-training quantization and the analysis tables.
"""

from __future__ import annotations

from typing import Any, Iterable


def key_name(entry: Any) -> str:
  """One element of a path as text.

  ``jax.tree_util`` key entries give their key (``DictKey.key``,
  ``FlattenedIndexKey.key``), attribute name (``GetAttrKey.name``) or index
  (``SequenceKey.idx``); the plain ``str``/``int`` elements of ``nnx.iter_graph``,
  ``nnx.iter_modules`` and ``nnx.to_flat_state`` paths give ``str(entry)``.
  """
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def path_name(path: Iterable[Any]) -> str:
  """The elements of ``path`` joined with ``/``:
  ``("blocks", 0, "unit1", "conv", "kernel")`` → ``"blocks/0/unit1/conv/kernel"``."""
  return "/".join(key_name(k) for k in path)
