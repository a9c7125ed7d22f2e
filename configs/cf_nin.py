"""Cross-filter NIN on CIFAR-10 (cross-filter paper §5.2.1, Tables 3-4).

``:paper``: CIFAR-10, no augmentation, batch 128, 320 epochs, lr 0.01 ÷10 at epochs
120, 200, 240, 280. The paper does not name the optimizer: SGD with momentum 0.9 here
(an assumption). Example: ``--config=configs/cf_nin.py:method=bw_cf,n=2,first``.
"""

from configs import common


def _paper(c):
  common.cifar_step_schedule(c, augment=False)


def get_config(arg=None):
  return common.cross_filter_config(arg, model_name="nin",
                                    small_kwargs={"width_mult": 0.25}, paper_fn=_paper)


def _is_paper(arg) -> bool:
  return bool(arg) and "paper" in [a.strip() for a in arg.split(",")]


def sweep(add, arg=None):
  """Tables 3-4: BW-CF-n and XNOR-CF-n, and first/last layers quantized. The narrow
  default NIN has 40-filter layers, so its n stops at 8; ``:paper`` goes to 16."""
  common.cross_filter_sweep(add, arg, ns=(1, 2, 4, 8, 16) if _is_paper(arg) else (1, 2, 4, 8))
