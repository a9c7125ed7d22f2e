"""ReActNet's Bi-Real ResNet-18: RSign and RPReLU on XNOR-Net layers (docs/reactnet.md).

The Bi-Real ResNet-18 of ``configs/xnor_resnet18.py`` with the model argument
``model_kwargs.reactnet=True`` (Liu et al. 2020, §3.2): every unit is ReActNet's
post-activation Bi-Real block ``RPReLU(BN(conv(sign(x + b))) + shortcut(x))``, RSign's
learned per-channel shift the only threshold of each binary conv's sign (no batch
norm in front of it), RPReLU after every residual sum, and the stem has no ReLU before
the first sign (docs/reactnet.md#where-the-modules-sit). The binary
layers are the config's ``method`` (default ``xnor``: sign input and kernel, the
per-filter ``α = mean|W|`` that ReActNet's ``HardBinaryConv`` also uses, plus
XNOR-Net's ``K``, which ReActNet does not use and no registered method drops).

Default: embedded MNIST, width 16, two epochs of Adam 2e-3 on a 2-core CPU (same
data, width and optimizer as ``xnor_resnet18``'s default). ``:paper``: ImageNet,
width 64, the ReActNet code's ResNet-18 second step (``resnet/2_step2/run.sh``):
Adam, lr 2.5e-3, batch 512, 128 epochs, no weight decay, Bi-Real's ``approx_sign``
on activations; a cosine schedule in place of its linear decay, trained in one step
from scratch without its distillation from a ResNet-34 (docs/reactnet.md#departures).

Arguments: ``dataset=fashion_mnist``; ``method=`` any ``bnnjax.methods`` name (e.g.
``xnorpp_1``); ``reactnet=false`` for the same run without RSign/RPReLU; ``seeds=n``
(the sweep only).

``sweep()`` is the comparison of issue 17: ReActNet (``method`` + RSign/RPReLU)
against plain ``xnor`` and XNOR-Net++ case 1 (``xnorpp_1``), seeds ``0 … n−1``
(3 by default), all at this config's budget, on Fashion-MNIST unless ``dataset=``
says otherwise::

    python -m experiments.sweep --config=configs/reactnet_resnet18.py \\
        --workdir=runs/reactnet_compare

``python -m benchmarks.reactnet_compare`` runs the same points and writes the mean ±
std table to ``benchmarks/results/reactnet_compare.{json,md}``.
"""

from configs import common

ARGS = dict(paper=False, dataset="", method="xnor", reactnet=True, seeds=3)
# The comparison (sweep) runs on Fashion-MNIST when no dataset= is given: MNIST is
# too easy to separate methods at this budget.
SWEEP_DATASET = "fashion_mnist"
# The methods the sweep compares ReActNet with, at the same budget, without RSign and
# RPReLU.
BASELINES = ("xnor", "xnorpp_1")


def get_config(arg=None):
  args = common.parse_arg(arg, **ARGS)
  c = common.base_config()
  c.model_name = "resnet18"
  c.method = args.method
  if args.paper:
    common.imagenet_paper(c, batch_size=512, epochs=128.0, optimizer="adam", lr=2.5e-3,
                          weight_decay=0.0, decay_every_epochs=128.0)
    c.schedule = "cosine"
    c.input_quantizer = "approx_sign"
    c.model_kwargs.stem = "imagenet"
    c.model_kwargs.width = 64
  else:
    common.small_cpu_default(c, epochs=2.0, width=16)
  c.model_kwargs.reactnet = args.reactnet
  if args.dataset:
    c.dataset = args.dataset
  return c


def sweep(add, arg=None):
  """ReActNet (``method`` with RSign and RPReLU) against ``xnor`` and ``xnorpp_1``
  without them, for seeds ``0 … seeds−1``; points ``<variant>_seed<s>``."""
  args = common.parse_arg(arg, **ARGS)  # the same arguments as get_config, checked
  if not args.reactnet:
    raise ValueError("Config argument reactnet=False: the sweep compares ReActNet "
                     "with its baselines, so it needs reactnet=True.")
  if args.seeds < 1:
    raise ValueError(f"Config argument seeds={args.seeds}; allowed values are >= 1.")
  dataset = args.dataset or SWEEP_DATASET
  variants = {"reactnet": (args.method, True),
              **{m: (m, False) for m in BASELINES}}
  for seed in range(args.seeds):
    for variant, (method, reactnet) in variants.items():
      add(name=f"{variant}_seed{seed}", seed=seed, dataset=dataset, method=method,
          **{"model_kwargs.reactnet": reactnet})
