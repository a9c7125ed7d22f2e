"""Checkpoints of the training state with orbax's ``CheckpointManager``.

Each checkpoint ``checkpoints/<step>/`` holds four orbax items under their own names:
``params`` (by layer path, e.g. ``blocks/2/unit2/conv/kernel``), ``rest`` (batch
statistics, RNG state as raw key data, other variables), ``opt_state`` (by the optax
state's own path) and ``step``. Saving is asynchronous: the state is copied to host
memory, then written in the background while training goes on; a new save, ``wait``
and ``close`` wait for the previous one. Restoring maps names onto the structure of a
freshly initialised state, so the files do not depend on pytree node order.

Checkpoints of the earlier format (one item ``default`` of numbered arrays
``00000``...) still restore. A checkpoint that fails to read is reported in one line,
moved to ``<workdir>/checkpoints_unreadable/<step>`` (kept, not deleted) and the next
older one is used.
"""

from __future__ import annotations

import datetime
import gc
import io
import logging
import os
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from bnnjax.train.parallel import is_main_process
from bnnjax.train.parallel import is_prng_key
from bnnjax.train.parallel import to_host
from bnnjax.tree_paths import key_name
from bnnjax.tree_paths import path_name

ITEMS = ("params", "rest", "opt_state", "step")
LEGACY_ITEM = "default"


class CheckpointError(RuntimeError):
  """No checkpoint of the workdir could be restored."""


def _paths(tree) -> list[tuple[tuple[str, ...], object]]:
  """``(path, leaf)`` for every leaf; a path is a tuple of names (nnx's ``value`` of a
  Variable dropped)."""
  out = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    names = tuple(key_name(p) for p in path)
    if len(names) > 1 and names[-1] in ("value", "raw_value"):
      names = names[:-1]
    out.append((names or ("value",), leaf))
  return out


def _nested(tree) -> dict:
  """Host copies of ``tree``'s leaves in a nested dict keyed by their path names."""
  out: dict = {}
  for names, leaf in _paths(tree):
    node = out
    for n in names[:-1]:
      node = node.setdefault(n, {})
    # A copy: the host array may share the device buffer, which the next (donating)
    # train step reuses while the asynchronous save is still writing.
    node[names[-1]] = np.array(to_host(leaf), copy=True)
  if not out:
    out = {"_empty": np.zeros((), np.int32)}  # orbax saves no empty tree
  return out


def _from_nested(nested: dict, like):
  leaves, treedef = jax.tree.flatten(like)
  out = []
  for (names, ref), _ in zip(_paths(like), leaves):
    node = nested
    for n in names:
      node = node[n]
    out.append(_convert(np.asarray(node), ref, path_name(names)))
  return jax.tree.unflatten(treedef, out)


def _convert(arr, ref, name: str):
  if is_prng_key(ref):
    return jax.random.wrap_key_data(jnp.asarray(arr), impl=jax.random.key_impl(ref))
  if tuple(arr.shape) != tuple(ref.shape):
    raise ValueError(
        f"Checkpoint array {name} has shape {tuple(arr.shape)}, the state expects "
        f"{tuple(ref.shape)}: it was written by a different model config.")
  return jnp.asarray(arr, dtype=ref.dtype)


def _state_items(state) -> dict:
  return {"params": state.params, "rest": state.rest, "opt_state": state.opt_state,
          "step": state.step}


# --- the earlier format: one "default" item of numbered leaves.
def _legacy_flat(tree) -> dict[str, np.ndarray]:
  return {f"{i:05d}": to_host(x) for i, x in enumerate(jax.tree.leaves(tree))}


def _legacy_restore(path: str, like):
  target = _legacy_flat(like)
  with ocp.StandardCheckpointer() as ckptr:
    flat = ckptr.restore(path, target)
  leaves, treedef = jax.tree.flatten(like)
  if len(flat) != len(leaves):
    raise ValueError(
        f"Checkpoint has {len(flat)} arrays but the model/optimizer state has "
        f"{len(leaves)}: it was written by a different model or optimizer config.")
  return jax.tree.unflatten(treedef, [_convert(np.asarray(flat[f"{i:05d}"]), ref, str(i))
                                      for i, ref in enumerate(leaves)])


# The lines of the traceback each tensorstore read still in flight prints once orbax
# has closed its event loop after a failed restore (``loop.call_soon_threadsafe`` on a
# closed loop). Several reader threads print at once, so their lines interleave.
_CLOSED_LOOP_LINES = frozenset((
    "Traceback (most recent call last):", "self._check_closed()",
    "raise RuntimeError('Event loop is closed')", "RuntimeError: Event loop is closed"))


def _drop_closed_loop_tracebacks(text: str) -> str:
  """``text`` without the lines of "Event loop is closed" tracebacks (interleaved or
  not); text without that error is returned unchanged."""
  if "Event loop is closed" not in text:
    return text
  return "".join(
      line for line in text.splitlines(keepends=True)
      if line.strip() not in _CLOSED_LOOP_LINES
      and not (line.lstrip().startswith('File "')
               and os.path.join("asyncio", "base_events.py") in line))


def _is_closed_loop(exc: BaseException | None) -> bool:
  return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"


def _ignore_closed_loop_callbacks() -> None:
  """Installs (once) a ``sys.unraisablehook`` that drops the "Event loop is closed"
  errors of tensorstore's read callbacks and passes every other unraisable exception
  to the hook that was there. Those callbacks report through the hook whenever they
  finish, which after a failed restore can be after any capture window has closed."""
  previous = sys.unraisablehook
  if getattr(previous, "drops_closed_loop_callbacks", False):
    return

  def hook(unraisable):
    if not _is_closed_loop(unraisable.exc_value):
      previous(unraisable)
  hook.drops_closed_loop_callbacks = True
  sys.unraisablehook = hook


def _one_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def saved_steps(workdir: str) -> list[int]:
  """The steps of the checkpoints in ``workdir/checkpoints``, ascending, read from the
  directory names (no orbax manager is opened, nothing is created)."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def read_items(workdir: str, step: int, items=ITEMS) -> dict[str, dict]:
  """The nested trees (dicts of numpy arrays keyed by path names) of ``items`` of
  ``workdir``'s checkpoint ``step``, read without a config or a model."""
  ck = Checkpointer(workdir)
  try:
    return {item: ck._manager.restore(step, args=ocp.args.Composite(
        **{item: ocp.args.StandardRestore()}))[item] for item in items}
  finally:
    ck.close()


def read_arrays(workdir: str, step: int | None = None) -> dict[str, np.ndarray]:
  """Every array of ``workdir``'s checkpoint at ``step`` (default: the latest), keyed
  ``item['name']...`` (e.g. ``params['ops']['0']['conv']['kernel']``), without a
  config; for inspecting and comparing checkpoints."""
  if step is None:
    steps = saved_steps(workdir)
    step = steps[-1] if steps else None
  out = {}
  for item, tree in read_items(workdir, step).items():
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      out[item + jax.tree_util.keystr(path)] = np.asarray(leaf)
  return out


class Checkpointer:
  """Keeps the last ``max_to_keep`` checkpoints of a run under ``workdir/checkpoints``.

  ``owner``: this process trains in ``workdir`` and holds its lock
  (:mod:`bnnjax.train.workdir_lock`), so the temporary directory of a save that a kill
  interrupted is its own and is removed on opening (orbax's
  ``cleanup_tmp_directories``). A reader (``load_trained``, a notebook reading a run
  that is still training) must not: that directory may be a save in progress.
  """

  def __init__(self, workdir: str, max_to_keep: int = 2, *, owner: bool = False):
    if not isinstance(max_to_keep, int) or max_to_keep < 1:
      raise ValueError(f"config.keep_checkpoints={max_to_keep!r}; allowed values are "
                       "integers >= 1 (the final state is always kept).")
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.max_to_keep = max_to_keep
    self.owner = owner
    self._manager = self._open()

  def _open(self):
    return ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=self.max_to_keep, create=True,
                                             enable_async_checkpointing=True,
                                             cleanup_tmp_directories=self.owner))

  def latest_step(self) -> int | None:
    if self._manager is None:  # closed
      steps = saved_steps(self.workdir)
      return steps[-1] if steps else None
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state, wait: bool = False) -> None:
    """Starts writing ``state`` at ``step`` (host copy now, files in the background);
    ``wait=True`` returns once it is on disk."""
    args = ocp.args.Composite(**{k: ocp.args.StandardSave(_nested(v))
                                 for k, v in _state_items(state).items()})
    self._manager.save(step, args=args)
    if wait:
      self._manager.wait_until_finished()

  def reached_preemption(self, step: int) -> bool:
    """True when a multi-process job's preemption notice (SIGTERM) reached ``step``."""
    return self._manager.reached_preemption(step)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def _restore_step(self, like, step: int):
    step_dir = os.path.join(self.directory, str(step))
    if os.path.isdir(os.path.join(step_dir, LEGACY_ITEM)):
      return _legacy_restore(os.path.join(step_dir, LEGACY_ITEM), like)
    items = _state_items(like)
    args = ocp.args.Composite(**{k: ocp.args.StandardRestore(_nested(v))
                                 for k, v in items.items()})
    restored = self._manager.restore(step, args=args)
    out = {k: _from_nested(restored[k], v) for k, v in items.items()}
    return type(like)(**out)

  def restore(self, like, step: int | None = None, *, fallback: bool = False,
              report=print):
    """The saved state at ``step`` (default: latest) in the structure of ``like``.

    With ``fallback``, a checkpoint that fails to read is reported in one line, moved
    to ``<workdir>/checkpoints_unreadable/`` and the next older one is tried.

    Raises:
      CheckpointError: no checkpoint could be read (``FileNotFoundError`` when there is
        none).
    """
    steps = self.all_steps()
    if not steps:
      raise FileNotFoundError(f"{self.directory} holds no checkpoint.")
    if step is not None:
      if step not in steps:
        raise FileNotFoundError(f"{self.directory} has no checkpoint of step {step}; "
                                f"it has steps {steps}.")
      candidates = [step]
    else:
      candidates = steps[::-1] if fallback else steps[-1:]
    failures = []
    for s in candidates:
      try:
        return self._with_quiet_orbax(self._restore_step, like, s)
      except ValueError as e:
        if "different model" in str(e):
          raise
        failures.append((s, e))
      except Exception as e:  # pylint: disable=broad-except
        failures.append((s, e))
      if not fallback:
        break
      moved = self._set_aside(s)
      older = [c for c in candidates if c < s]
      report(f"Checkpoint of step {s} could not be read ({_one_line(failures[-1][1])}); "
             f"moved to {moved}; " + (f"trying step {older[0]}." if older else
                                      "no older checkpoint is left."), flush=True)
    s, e = failures[-1]
    raise CheckpointError(
        f"Could not restore the checkpoint of step {s} in {self.directory} "
        f"({_one_line(e)}).") from e

  def _with_quiet_orbax(self, fn, *args):
    # orbax logs a failed read at ERROR with its traceback, and tensorstore's reads
    # that were still in flight print "RuntimeError: Event loop is closed" tracebacks
    # once orbax's event loop has closed; the caller reports the failure in one line.
    # asyncio logs "Future exception was never retrieved" when such a read's future is
    # collected.
    loggers = [logging.getLogger(n)
               for n in ("absl", "orbax", "jax._src.distributed", "asyncio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
      lg.setLevel(logging.CRITICAL)
    _ignore_closed_loop_callbacks()
    stderr, captured = sys.stderr, io.StringIO()
    sys.stderr = captured
    failed = True
    try:
      out = fn(*args)
      failed = False
      return out
    finally:
      if failed:  # let the reads in flight fail while stderr is captured: until it
        # has been quiet for 0.5 s (at most 10 s), then collect their futures
        seen, quiet_since, deadline = -1, time.monotonic(), time.monotonic() + 10
        while time.monotonic() < min(quiet_since + 0.5, deadline):
          time.sleep(0.05)
          if len(captured.getvalue()) != seen:
            seen, quiet_since = len(captured.getvalue()), time.monotonic()
        gc.collect()
      sys.stderr = stderr
      for lg, level in zip(loggers, levels):
        lg.setLevel(level)
      text = _drop_closed_loop_tracebacks(captured.getvalue())
      if text:
        stderr.write(text)

  def _set_aside(self, step: int) -> str:
    """Moves an unreadable checkpoint out of orbax's directory; returns where."""
    dest_root = os.path.join(os.path.abspath(self.workdir), "checkpoints_unreadable")
    dest = os.path.join(dest_root, str(step))
    if os.path.exists(dest):
      dest += "." + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    if is_main_process():
      os.makedirs(dest_root, exist_ok=True)
      shutil.move(os.path.join(self.directory, str(step)), dest)
    self._manager.close()
    self._manager = self._open()
    return dest

  def close(self) -> None:
    if self._manager is None:
      return
    try:
      self._manager.wait_until_finished()
    finally:
      self._manager.close()
      self._manager = None
