"""XNOR-Net++ ResNet-18 with learned fused scale Γ (``case=1..4``, SPEC §4).

Default: embedded MNIST, width-16 ResNet-18, case 4. ``:paper``: ImageNet, Adam,
lr 1e-3, weight decay 1e-5, ÷10 every 25 epochs, 80 epochs, batch 256 (paper §5.1.3).
Example: ``--config=configs/xnorpp_resnet18.py:case=3,paper``.
"""

from configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, case=4, paper=False, dataset="")
  c = common.base_config()
  c.model_name = "resnet18"
  c.method = "xnorpp"
  c.gamma_case = args.case
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
