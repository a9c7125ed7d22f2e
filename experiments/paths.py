"""Where the experiment commands put their runs."""

from __future__ import annotations

import os
import re


def default_workdir(config_arg: str) -> str:
  """``runs/<config file stem>[_<arg>]`` with the arg made filesystem-safe."""
  path, _, arg = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  if arg:
    name += "_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", arg)
  return os.path.join("runs", name)
