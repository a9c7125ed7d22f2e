"""Checkpoints of the training state with orbax, for automatic resume from a workdir.

The state is saved as a flat, numbered dict of arrays (PRNG keys as their raw key
data) and restored into the structure of a freshly initialised state, so the saved
files do not depend on how NNX or optax name their pytree nodes.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from bnnjax.train.parallel import to_host


def _is_key(x) -> bool:
  return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_saveable(tree) -> dict[str, np.ndarray]:
  # Host copies of replicated arrays: orbax writes numpy arrays from process 0 only,
  # and the checkpoint restores onto any device count.
  leaves = jax.tree.leaves(tree)
  return {f"{i:05d}": to_host(x) for i, x in enumerate(leaves)}


def _from_saveable(flat: dict, like):
  leaves, treedef = jax.tree.flatten(like)
  if len(flat) != len(leaves):
    raise ValueError(
        f"Checkpoint has {len(flat)} arrays but the model/optimizer state has "
        f"{len(leaves)}: it was written by a different model or optimizer config.")
  out = []
  for i, ref in enumerate(leaves):
    arr = flat[f"{i:05d}"]
    if _is_key(ref):
      out.append(jax.random.wrap_key_data(jnp.asarray(arr), impl=jax.random.key_impl(ref)))
    else:
      if tuple(arr.shape) != tuple(ref.shape):
        raise ValueError(
            f"Checkpoint array {i} has shape {tuple(arr.shape)}, the state expects "
            f"{tuple(ref.shape)}: it was written by a different model config.")
      out.append(jnp.asarray(arr, dtype=ref.dtype))
  return jax.tree.unflatten(treedef, out)


class Checkpointer:
  """Keeps the last ``max_to_keep`` checkpoints of a run under ``workdir/checkpoints``."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state) -> None:
    """Writes ``state`` at ``step`` and waits until it is on disk."""
    self._manager.save(step, args=ocp.args.StandardSave(_to_saveable(state)))
    self._manager.wait_until_finished()

  def restore(self, like, step: int | None = None):
    """The saved state at ``step`` (default: latest) in the structure of ``like``."""
    step = self.latest_step() if step is None else step
    flat = self._manager.restore(step, args=ocp.args.StandardRestore(_to_saveable(like)))
    return _from_saveable(flat, like)

  def close(self) -> None:
    self._manager.close()
