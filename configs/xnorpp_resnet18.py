"""XNOR-Net++ ResNet-18 with learned fused scale Γ (``case=1..4``, docs/xnorpp.md).

Default: embedded MNIST, width-16 ResNet-18, case 4. ``:paper``: ImageNet, Adam,
lr 1e-3, weight decay 1e-5, ÷10 every 25 epochs, 80 epochs, batch 256 (paper §5.1.3).
Example: ``--config=configs/xnorpp_resnet18.py:case=3,paper``.
"""

from configs import common
from configs import xnor_resnet18


def get_config(arg=None):
  args = common.parse_arg(arg, case=4, paper=False, dataset="")
  # Same network, data and schedule as xnor_resnet18 (both follow XNOR-Net++ §5.1.3).
  base_args = ["method=xnorpp"] + (["paper"] if args.paper else []) + (
      [f"dataset={args.dataset}"] if args.dataset else [])
  c = xnor_resnet18.get_config(",".join(base_args))
  c.gamma_case = args.case
  return c


def sweep(add, arg=None):
  """XNOR-Net++ Table 1: XNOR (α of the weights, K of the inputs) against Γ cases 1-4
  (``python -m experiments.sweep --config=configs/xnorpp_resnet18.py --workdir=...``)."""
  common.parse_arg(arg, case=4, paper=False, dataset="")  # same arguments, checked
  add(name="xnor", method="xnor", gamma_case=None)
  for case in (1, 2, 3, 4):
    add(name=f"case{case}", gamma_case=case)
