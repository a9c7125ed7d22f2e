"""Full-precision ResNet-18 baseline (same architecture and budget as bonn_resnet18).

Arguments as ``bonn_resnet18`` (``paper``, ``dataset=...``); the method is ``fp``.
"""

from configs import bonn_resnet18


def get_config(arg=None):
  return bonn_resnet18.get_config(f"{arg},method=fp" if arg else "method=fp")
