"""Cross-filter ResNet-18 (cross-filter paper §5.2.4): first conv, shortcuts and last
layer full precision.

``:paper``: ImageNet, batch 128, 60 epochs, lr 1e-3 ÷10 every 20 epochs; the optimizer
is not named in the seed: Adam here (an assumption).
"""

from configs import common


def _paper(c):
  common.imagenet_paper(c, batch_size=128, epochs=60.0, optimizer="adam", lr=1e-3,
                        weight_decay=0.0, decay_every_epochs=20.0)
  c.model_kwargs.stem = "imagenet"
  c.model_kwargs.width = 64


def get_config(arg=None):
  return common.cross_filter_config(arg, model_name="resnet18",
                                    small_kwargs={"width": 16}, paper_fn=_paper)


def sweep(add, arg=None):
  """Tables 3-4: BW-CF-n and XNOR-CF-n, n in {1, 2, 4, 8, 16}, and first/last layers
  quantized (``python -m experiments.sweep --config=configs/cf_resnet18.py --workdir=...``)."""
  common.cross_filter_sweep(add, arg)
