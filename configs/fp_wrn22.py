"""Full-precision WRN-22 baseline (arguments as ``bonn_wrn22``; method ``fp``)."""

from configs import bonn_wrn22


def get_config(arg=None):
  return bonn_wrn22.get_config(f"{arg},method=fp" if arg else "method=fp")
