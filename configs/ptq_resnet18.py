"""Data-free post-training quantization of a float ResNet-18 (Nayak et al., Bit
Efficient Quantization; docs/ptq.md): ``python -m experiments.ptq --config=configs/ptq_resnet18.py``.

The top-level fields train the float model (they are ``fp_resnet18``'s, and go to
``bnnjax.train.train_and_evaluate`` without ``ptq``); ``ptq`` holds the sweep.

Default: embedded Fashion-MNIST (its shirt / T-shirt / pullover / coat confusions play
the part of the seed's cat / dog), a narrow ResNet-18 (width 16) trained one epoch,
then every scheme × 2-8 bits × per tensor / per channel on the first 5000 test images;
about 10 minutes on a 2-core CPU, training included.

Arguments (``--config=configs/ptq_resnet18.py:dataset=mnist,width=8``):
``dataset``, ``width``, ``epochs``, ``test_examples`` (0: the whole test split) and
``paper``: the seed's setting, CIFAR-10 (prepared by the user) with the full width 64
and the cross-filter paper's CIFAR schedule (the seed does not say how its model was
trained). Single fields: ``--config.ptq.bits="(8,4,3)"``, ``--config.num_train_steps=100``.
"""

import ml_collections

from configs import common
from configs import fp_resnet18


def ptq_config(*, test_examples: int | None) -> ml_collections.ConfigDict:
  """The sweep's fields (read by ``experiments.ptq``)."""
  p = ml_collections.ConfigDict()
  p.schemes = ("asymmetric", "symmetric", "power_of_two")
  p.bits = (8, 7, 6, 5, 4, 3, 2)
  p.granularities = ("per_tensor", "per_channel")
  # bnnjax.ptq.GROUPS: conv, dense, bias, batch_norm (γ, β) and batch_stats (running
  # mean/var, off by default: see bnnjax.ptq.model).
  p.groups = ("conv", "dense", "bias", "batch_norm")
  p.num_test_examples = ml_collections.FieldReference(test_examples, field_type=int)
  p.eval_batch_size = 500
  p.compress = True  # gzip/LZMA sizes of every quantized model (the slow part)
  # Class grouping (seed Table 2): merges from each model's own confusion matrix.
  p.grouping_bits = 3
  p.grouping_merges = 2
  # Figures 1-2: one layer (its state path), drawn at figure_bits; Fig. 2 right sweeps
  # the bits of histogram_scheme.
  p.figure_layer = "blocks/2/unit2/conv/kernel"
  p.figure_bits = 4
  p.histogram_scheme = "symmetric"
  return p


def get_config(arg=None):
  args = common.parse_arg(arg, dataset="fashion_mnist", width=16, epochs=1.0,
                          test_examples=5000, paper=False)
  c = fp_resnet18.get_config()
  c.model_kwargs.width = args.width
  c.num_epochs = args.epochs
  c.dataset = args.dataset
  test_examples = args.test_examples or None
  if args.paper:
    c.dataset = "cifar10"
    c.model_kwargs.stem = "small"
    c.model_kwargs.width = 64
    common.cifar_step_schedule(c, augment=True)
    test_examples = None
  c.ptq = ptq_config(test_examples=test_examples)
  return c
