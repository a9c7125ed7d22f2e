"""Cross-filter VGG-7 on CIFAR-10 (cross-filter paper §5.2.2, Table 3).

The seed gives no schedule for VGG-7: ``:paper`` uses NIN's (batch 128, lr 0.01 ÷10 at
120/200/240/280, 320 epochs, SGD momentum 0.9), with the usual CIFAR augmentation (an
assumption; say so when comparing).
"""

from configs import common


def _paper(c):
  common.cifar_step_schedule(c, augment=True)


def get_config(arg=None):
  return common.cross_filter_config(arg, model_name="vgg7",
                                    small_kwargs={"width_mult": 0.125}, paper_fn=_paper)


def sweep(add, arg=None):
  """Tables 3-4: BW-CF-n and XNOR-CF-n, n in {1, 2, 4, 8, 16}, and first/last layers
  quantized (``python -m experiments.sweep --config=configs/cf_vgg7.py --workdir=...``)."""
  common.cross_filter_sweep(add, arg)
