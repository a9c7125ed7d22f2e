"""What ``experiments.run``, ``experiments.sweep`` and ``experiments.ptq`` share on the
command line: flag parsing that turns config and usage errors into one clear line, and
a ``main`` wrapper that does the same for errors raised before training.

``run(main)`` replaces ``absl.app.run(main)``. A config or usage error (a bad
``--config`` file or argument, an unknown ``--config.field``, a value of the wrong
type, a field that fails :mod:`bnnjax.train.validation`, a busy or unusable workdir)
prints ``error: <message>`` to stderr and exits with status 2 (3 for a workdir in use
by another run) without a traceback; ``--debug`` or ``BNNJAX_DEBUG=1`` shows the
traceback. Training stopped by SIGTERM / SIGINT prints which checkpoint was kept and
exits with 128 + the signal number.

``--config.field=None`` sets a field to None (as ``experiments.sweep --dry_run``
prints for points that unset a field), which ml_collections' flags cannot parse.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from absl import app
from absl import flags
import ml_collections

DEBUG_ENV = "BNNJAX_DEBUG"
EXIT_USAGE = 2
EXIT_BUSY = 3


def define_config_flag(help_text: str = "Config file, optionally with an argument: "
                       "configs/x.py:arg."):
  """Defines the ``--config`` flag every command takes (an ml_collections config file,
  locked so a mistyped ``--config.field`` is an error) and returns its holder. Call it
  from the command's own flag definitions, which run only when it is the command."""
  from ml_collections import config_flags
  return config_flags.DEFINE_config_file("config", None, help_text, lock_config=True)


def debug_enabled(argv=None) -> bool:
  argv = sys.argv if argv is None else argv
  return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def fail(message: str, code: int = EXIT_USAGE):
  """Prints one ``error:`` line (plus how to see a traceback) and exits."""
  print(f"error: {message}", file=sys.stderr)
  if code == EXIT_USAGE:
    print(f"(--debug or {DEBUG_ENV}=1 shows the traceback)", file=sys.stderr)
  sys.stderr.flush()
  sys.exit(code)


def _config_arg(argv) -> str | None:
  for a in argv:
    if a.startswith("--config="):
      return a.partition("=")[2]
  return None


def load_config_file(config_arg: str):
  """``get_config(arg)`` of ``--config=FILE[:ARG]``; raises ``ValueError`` with a
  one-line reason (missing file, no get_config, a bad argument)."""
  path, _, arg = config_arg.partition(":")
  if not os.path.isfile(path):
    raise ValueError(f"--config={config_arg}: no such file {path!r}.")
  spec = importlib.util.spec_from_file_location("_cli_config", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"--config={config_arg}: the file fails to load "
                     f"({type(e).__name__}: {e}).") from e
  if not hasattr(module, "get_config"):
    raise ValueError(f"--config={config_arg}: {path} defines no get_config(arg=None).")
  try:
    return module.get_config(arg) if arg else module.get_config()
  except (ValueError, TypeError) as e:
    raise ValueError(f"--config={config_arg}: {e}") from e


def _unknown_override(argv, config) -> str | None:
  """The message for the first ``--config.a.b=...`` that names no field of ``config``."""
  from bnnjax.train import validation
  for a in argv:
    if not a.startswith("--config."):
      continue
    key = a[len("--config."):].partition("=")[0]
    node, parts = config, key.split(".")
    for i, part in enumerate(parts):
      if isinstance(node, ml_collections.ConfigDict) and part in node:
        node = node[part]
        continue
      names = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      prefix = "config." + "".join(p + "." for p in parts[:i])
      return "--" + validation.unknown_field_message(".".join(parts[i:]), names, prefix)
  return None


def _split_none_overrides(argv):
  rest, nones = [], []
  for a in argv:
    if a.startswith("--config.") and a.endswith("=None"):
      nones.append(a[len("--config."):-len("=None")])
    else:
      rest.append(a)
  return rest, nones


def _set_none(config, key: str) -> None:
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node[p]
  with node.unlocked() if hasattr(node, "unlocked") else _nullcontext():
    node[leaf] = None


class _nullcontext:
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


def _parse(argv):
  """absl's parsing of ``argv``, with config errors as one line."""
  argv, nones = _split_none_overrides(argv)
  config_arg = _config_arg(argv)
  if config_arg is not None:
    try:
      config = load_config_file(config_arg)
    except ValueError as e:
      fail(str(e))
    message = _unknown_override(argv, config)
    if message:
      fail(message)
    for key in nones:
      msg = _unknown_override([f"--config.{key}=None"], config)
      if msg:
        fail(msg)
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{e}".replace("flag --", "--", 1))
  if config_arg is not None and "config" in flags.FLAGS:
    config = flags.FLAGS["config"].value
    for key in nones:
      _set_none(config, key)
  return rest


def _clean_errors():
  from bnnjax.train import checkpoint
  from bnnjax.train import validation
  from bnnjax.train import workdir_lock
  return validation.ConfigError, workdir_lock.WorkdirBusy, checkpoint.CheckpointError


def run(main, clean=()):
  """``absl.app.run(main)`` with one-line errors (see the module docstring).

  ``clean``: further exception types ``main`` raises for a user error, printed as one
  line (``app.UsageError``, the config, workdir and checkpoint errors always are).
  """
  if "debug" not in flags.FLAGS:
    flags.DEFINE_bool("debug", False, f"Show the traceback of config and usage errors "
                      f"(also {DEBUG_ENV}=1).")
  debug = debug_enabled()
  argv = list(sys.argv)

  def wrapped(args):
    from bnnjax.train import trainer
    config_error, busy, ckpt_error = _clean_errors()
    try:
      return main(args)
    except trainer.Interrupted as e:
      print(str(e), file=sys.stderr, flush=True)
      sys.exit(128 + int(e.signum))
    except KeyboardInterrupt:
      if debug:
        raise
      print("Interrupted before training started; nothing was saved.", file=sys.stderr)
      sys.exit(130)
    except busy as e:
      if debug:
        raise
      fail(str(e), EXIT_BUSY)
    except (config_error, app.UsageError, ckpt_error, FloatingPointError,
            *clean) as e:
      if debug:
        raise
      fail(str(e), 1 if isinstance(e, (ckpt_error, FloatingPointError)) else EXIT_USAGE)

  app.run(wrapped, argv=argv, flags_parser=_parse)
