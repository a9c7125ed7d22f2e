"""Cross-filter AlexNet on ImageNet (cross-filter paper §5.2.3, Table 3).

``:paper``: batch 256, 50 epochs, Adam, lr 1e-3 ÷10 at epoch 25. The weight decay's
value is lost from the seed text: 5e-4 here (an assumption; override with
``--config.weight_decay``).
"""

from configs import common


def _paper(c):
  common.imagenet_paper(c, batch_size=256, epochs=50.0, optimizer="adam", lr=1e-3,
                        weight_decay=5e-4, decay_every_epochs=25.0)


def get_config(arg=None):
  return common.cross_filter_config(arg, model_name="alexnet",
                                    small_kwargs={"width_mult": 0.125}, paper_fn=_paper)


def sweep(add, arg=None):
  """Tables 3-4: BW-CF-n and XNOR-CF-n, n in {1, 2, 4, 8, 16}, and first/last layers
  quantized (``python -m experiments.sweep --config=configs/cf_alexnet.py --workdir=...``)."""
  common.cross_filter_sweep(add, arg)
