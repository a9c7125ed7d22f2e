"""XNOR-Net ResNet-18 (binary weights and activations, analytic alpha and K).

Default: embedded MNIST, a narrow ResNet-18 that trains on a 2-core CPU in minutes.
``:paper``: ImageNet, full width, the XNOR-Net++ paper's schedule (§5.1.3: Adam, lr 1e-3,
weight decay 1e-5, ÷10 every 25 epochs, 80 epochs, batch 256).
"""

from configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, paper=False, dataset="", method="xnor")
  c = common.base_config()
  c.model_name = "resnet18"
  c.method = args.method
  if args.paper:
    common.imagenet_paper(c, batch_size=256, epochs=80.0, optimizer="adam", lr=1e-3,
                          weight_decay=1e-5, decay_every_epochs=25.0)
    c.model_kwargs.stem = "imagenet"
    c.model_kwargs.width = 64
  else:
    common.small_cpu_default(c, width=16)
  if args.dataset:
    c.dataset = args.dataset
  return c
