"""Cross-filter VGG-7 on CIFAR-10 (cross-filter paper §5.2.2, Table 3).

The seed gives no schedule for VGG-7: ``:paper`` uses NIN's (batch 128, lr 0.01 ÷10 at
120/200/240/280, 320 epochs, SGD momentum 0.9), with the usual CIFAR augmentation (an
assumption; say so when comparing).
"""

from configs import common


def _paper(c):
  c.dataset = "cifar10"
  c.batch_size = 128
  c.num_epochs = 320.0
  c.optimizer = "sgd"
  c.lr = 0.01
  c.schedule = "step"
  c.decay_epochs = (120, 200, 240, 280)
  c.checkpoint_every_steps = 2000


def get_config(arg=None):
  return common.cross_filter_config(arg, model_name="vgg7",
                                    small_kwargs={"width_mult": 0.125}, paper_fn=_paper)
