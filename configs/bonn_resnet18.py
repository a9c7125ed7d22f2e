"""BONN's ResNet-18 (Bi-Real style: BN → sign → binary 3×3 conv → add shortcut).

Default: embedded MNIST, a narrow ResNet-18 (width 16) for a few minutes on a 2-core
CPU; XNOR binary layers until the BONN losses land (then ``method="bonn"``).
``:paper``: ImageNet, width 64, SGD momentum 0.9, weight decay 1e-4, lr 0.1, ÷10 every
30 epochs, 70 epochs (BONN §4, SPEC §5). Other arguments: ``dataset=fashion_mnist``,
``method=...`` (any ``bnnjax.nn.method_spec`` name).
"""

from configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, paper=False, dataset="", method="xnor")
  c = common.base_config()
  c.model_name = "resnet18"
  c.method = args.method
  if args.paper:
    common.imagenet_paper(c, batch_size=256, epochs=70.0, optimizer="sgd", lr=0.1,
                          weight_decay=1e-4, decay_every_epochs=30.0)
    c.model_kwargs.stem = "imagenet"
    c.model_kwargs.width = 64
  else:
    c.model_kwargs.width = 16
    c.num_epochs = 2.0
    c.lr = 2e-3
    c.eval_batch_size = 1000
  if args.dataset:
    c.dataset = args.dataset
  return c
