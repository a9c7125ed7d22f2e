"""BONN's ResNet-18 (Bi-Real style: BN → sign → binary 3×3 conv → add shortcut).

BONN layers and losses (docs/bonn.md#total-loss-and-weights):
``CE + (λ/2)·Σ L_K + (θ/2)·mean L_F`` with λ = 1e-4, θ = 1e-3, ν = 1e-4 (fields
``bonn_lambda``, ``bonn_theta``, ``bonn_nu``), and the modulation ``w`` on its own
learning rate (``group_lr.Modulation``).

Default: embedded MNIST, a narrow ResNet-18 (width 16), two epochs on a 2-core CPU,
Adam 2e-3 (``w``: 2e-4, the paper's 1:10 ratio), the kernel loss **decoupled**
(``bonn_kernel_decoupled=True``: its gradient is applied after Adam at the learning
rate, as the paper's SGD applies it; added to the gradient that Adam normalises, it
freezes the binary weights, docs/bonn.md#investigation). Measured (2-core CPU, MNIST,
this default): 98.43% test top-1; coupled
(``--config.bonn_kernel_decoupled=False``) 86.58%; ``:method=xnor`` 97.92-98.22%.
``:paper``: ImageNet, width 64, SGD momentum 0.9, weight decay 1e-4, lr 0.1 (``w``:
0.01), ÷10 every 30 epochs, 70 epochs, the kernel loss in the gradient as the paper
has it.
Other arguments: ``dataset=fashion_mnist``; ``method=xnor`` (or any other
``bnnjax.methods`` name) drops BONN for that method.
"""

from bnnjax.methods import bonn
from configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, paper=False, dataset="", method=bonn.NAME)
  c = common.base_config()
  c.model_name = "resnet18"
  if args.paper:
    common.imagenet_paper(c, batch_size=256, epochs=70.0, optimizer="sgd", lr=0.1,
                          weight_decay=1e-4, decay_every_epochs=30.0)
    c.model_kwargs.stem = "imagenet"
    c.model_kwargs.width = 64
  else:
    common.small_cpu_default(c, epochs=2.0, width=16)
  if common.is_bonn(args.method):
    # sets c.method; under Adam the kernel loss is decoupled (see the docstring)
    common.add_bonn(c, w_lr=c.lr / 10, kernel_decoupled=not args.paper)
  else:
    c.method = args.method
  if args.dataset:
    c.dataset = args.dataset
  return c


def sweep(add, arg=None):
  """BONN Table 2 and the λ study (§3.2): λ ∈ {0, 1e-5, 1e-4, 1e-3} × θ ∈ {0, 1e-3}
  (``python -m experiments.sweep --config=configs/bonn_resnet18.py --workdir=...``)."""
  args = common.parse_arg(arg, paper=False, dataset="", method=bonn.NAME)
  if not common.is_bonn(args.method):
    raise ValueError(f"Config argument method={args.method!r}: the sweep varies BONN's "
                     "λ and θ, so it needs method=bonn.")
  for lam in (0.0, 1e-5, 1e-4, 1e-3):
    for theta in (0.0, 1e-3):
      add(bonn_lambda=lam, bonn_theta=theta)
