"""Bi-Real ResNet-18 trained with Bop (Helwegen et al. 2019; docs/bop.md).

The binary kernels are ±1 and trained by Bop (``kernel_optimizer="bop"``); every other
parameter (stem, shortcut 1×1 convs, classifier, batch norms, Γ) by Adam, as in the
paper. The method is XNOR-Net++'s case 1 (``xnorpp_1``): a learned per-channel scale
Γ after each binary conv, initialised from the float kernel's ``mean|W_o|``, carries
the magnitude that ±1 kernels lack (the paper's nets put a batch norm there; this
ResNet's units are pre-activation, ``BN → sign → conv``, so the scale is Γ). XNOR-Net's
``α = mean|W|`` would be 1 for ±1 kernels. Inputs are binarised with Bi-Real's
``approx_sign``, as in the paper's Bi-Real Net; kernels with the default ``ste_sign``,
whose gradient at ``|w| = 1`` is the plain straight-through one Bop needs.

Default: embedded MNIST, width-16 ResNet-18, one epoch on a 2-core CPU; Bop with the
paper's ``γ = 1e-4`` (following the learning rate's cosine decay) and ``τ = 1e-8``.
``:paper``: the paper's CIFAR-10 optimiser settings (§5.2): 500 epochs, batch 50, Adam
at a constant 1e-2 for the real-valued parameters, ``γ = 1e-4`` ÷10 every 100 epochs,
``τ = 1e-8``; full width, small stem. The paper trained BinaryNet (VGG-7,
``configs/cf_vgg7.py``'s network) on CIFAR-10 with these settings, not ResNet-18.
Example: ``--config=configs/bop_resnet18.py:paper``.
"""

from configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, paper=False, dataset="", method="xnorpp_1")
  c = common.base_config()
  c.model_name = "resnet18"
  c.method = args.method
  c.input_quantizer = "approx_sign"
  c.kernel_optimizer = "bop"
  c.bop_gamma = 1e-4
  c.bop_threshold = 1e-8
  if args.paper:
    c.dataset = "cifar10"
    c.model_kwargs.width = 64
    c.model_kwargs.stem = "small"
    c.batch_size = 50
    c.num_epochs = 500.0
    c.optimizer = "adam"
    c.lr = 1e-2
    c.schedule = "constant"
    c.bop_gamma_schedule = "step"
    c.decay_every_epochs = 100.0
    c.decay_factor = 0.1
    c.log_every_steps = 200
    c.checkpoint_every_steps = 5000
  else:
    common.small_cpu_default(c, width=16)
  if args.dataset:
    c.dataset = args.dataset
  return c
