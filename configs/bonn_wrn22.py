"""BONN's WRN-22 (BONN §4.1, Table 3).

BONN layers and losses (docs/bonn.md) as in ``bonn_resnet18``; the feature loss is used only
while fine-tuning, as the paper does for WRN (``bonn_feature_start_epoch``).

Default: embedded MNIST, WRN-22 16-16-32-64, one epoch on a 2-core CPU, feature loss
from epoch 0.5. ``:paper``: CIFAR-10, SGD momentum 0.9, lr 0.01 ×0.8 every 60 epochs,
200 epochs (docs/bonn.md#training-settings), feature loss over the last 60 epochs (the
seed does not say when fine-tuning starts: an assumption); add ``wide`` for
64-64-128-256 with dropout 0.3, ``dataset=cifar100`` for CIFAR-100, ``method=xnor``
(etc.) to drop BONN.

Under Adam (the default) the kernel loss is decoupled, as in ``bonn_resnet18``
(``bonn_kernel_decoupled``; ``:paper``'s SGD keeps it in the gradient). Measured on the
default (MNIST, one epoch, Adam 2e-3, 2-core CPU): **96.46%** test top-1;
``:method=xnor`` 96.5%. Coupled (``--config.bonn_kernel_decoupled=False``) the
paper's λ = 1e-4 freezes the binary weights (logged ``flip_ratio`` is 0 from step 50)
and ends at 35.1% (``--config.bonn_lambda=1e-6``: 89.4%): the kernel loss pulls each
latent weight to ±1/w, and Adam's per-weight normalisation makes that pull strong
whatever λ is (docs/bonn.md#investigation).
"""

from bnnjax.methods import bonn
from configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, paper=False, wide=False, dataset="", method=bonn.NAME)
  c = common.base_config()
  c.model_name = "wrn22"
  if args.wide:
    c.model_kwargs.widths = (64, 64, 128, 256)
    c.model_kwargs.dropout = 0.3
  else:
    c.model_kwargs.widths = (16, 16, 32, 64)
    c.model_kwargs.dropout = 0.0
  if args.paper:
    c.dataset = "cifar10"
    c.batch_size = 128
    c.num_epochs = 200.0
    c.optimizer = "sgd"
    c.lr = 0.01
    c.schedule = "step"
    c.decay_every_epochs = 60.0
    c.decay_factor = 0.8
    c.checkpoint_every_steps = 2000
  else:
    common.small_cpu_default(c)
  if common.is_bonn(args.method):
    common.add_bonn(c, w_lr=c.lr / 10,  # sets c.method
                    feature_start_epoch=140.0 if args.paper else 0.5,
                    kernel_decoupled=not args.paper)  # as bonn_resnet18
  else:
    c.method = args.method
  if args.dataset:
    c.dataset = args.dataset
  return c
