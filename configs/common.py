"""Shared pieces of the configs: the base config and big_vision-style argument parsing.

Every config file is ``get_config(arg=None)``; ``arg`` is the text after ``:`` in
``--config=configs/x.py:arg``, a comma-separated list of ``key=value`` or bare flags
(``--config=configs/xnorpp_resnet18.py:case=3,paper``).
"""

from __future__ import annotations

import ml_collections

from bnnjax import methods
from bnnjax.methods import bonn


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses ``"k1=v1,flag"`` into a ConfigDict over ``defaults`` (values typed like them).

  A bare ``flag`` sets a boolean default to True; an unknown key is an error naming it.
  """
  out = ml_collections.ConfigDict(defaults)
  if not arg:
    return out
  for item in arg.split(","):
    item = item.strip()
    if not item:
      continue
    key, _, value = item.partition("=")
    if key not in defaults:
      raise ValueError(
          f"Unknown config argument {key!r}; allowed arguments are {sorted(defaults)}.")
    default = defaults[key]
    if not _:
      if not isinstance(default, bool):
        raise ValueError(f"Config argument {key!r} needs a value ({key}=...).")
      out[key] = True
    elif isinstance(default, bool):
      out[key] = value.lower() in ("1", "true", "yes")
    elif isinstance(default, int):
      out[key] = int(value)
    elif isinstance(default, float):
      out[key] = float(value)
    else:
      out[key] = value
  return out


def base_config() -> ml_collections.ConfigDict:
  """Every field the trainer reads, with defaults for a small CPU run on MNIST."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Data (tfds names; mnist and fashion_mnist are prepared from registry packages).
  c.dataset = "mnist"
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.num_train_examples = ml_collections.FieldReference(None, field_type=int)
  c.num_test_examples = ml_collections.FieldReference(None, field_type=int)
  c.image_size = ml_collections.FieldReference(None, field_type=int)
  c.augment = True  # the dataset's training augmentation (CIFAR crop+flip, ImageNet RRC)
  # Model and quantization method (bnnjax.methods names, resolved by methods.resolve).
  c.model_name = "resnet18"
  c.model_kwargs = ml_collections.ConfigDict()
  c.method = "xnor"
  c.group_size = ml_collections.FieldReference(None, field_type=int)
  c.gamma_case = ml_collections.FieldReference(None, field_type=int)
  c.input_quantizer = ml_collections.FieldReference(None, field_type=str)
  c.kernel_quantizer = ml_collections.FieldReference(None, field_type=str)
  # Their hyper-parameters (docs/quantizers.md), checked against the quantizer, e.g.
  # {"k_bit": 2, "mode": "weights"} for kernel_quantizer="dorefa"; {} = its defaults.
  c.input_quantizer_kwargs = ml_collections.ConfigDict()
  c.kernel_quantizer_kwargs = ml_collections.ConfigDict()
  c.pad_value = ml_collections.FieldReference(None, field_type=float)
  c.quantize_first = False
  c.quantize_last = False
  # How layers with binary input and kernel compute their ±1 product: "float",
  # "packed" (XNOR-popcount forward, float straight-through backward) or "auto" (the
  # faster of the two for the platform); results are the same.
  c.binary_compute = "auto"
  # The dtype of that product when it is a float conv/dot: "float32", "bfloat16" (±1
  # is exact in it, products accumulate in float32: the same forward, gradients of
  # the product rounded to bfloat16) or "auto" (bfloat16 on TPU, float32 on CPU and
  # GPU: docs/gpu.md).
  c.binary_compute_dtype = "auto"
  # The precision of the layers with a float operand (stem, shortcuts, classifier,
  # full-precision models) in the train step: "highest" (float32 on a GPU), "default"
  # (the platform's: TF32 on Ampere/Hopper GPUs) or "auto" (= "default"). Evaluation
  # and the packed model always use "highest" (docs/gpu.md). No effect on CPU.
  c.train_float_precision = "auto"
  # Optimisation.
  c.batch_size = 128
  c.eval_batch_size = 500
  c.num_epochs = 1.0
  c.num_train_steps = ml_collections.FieldReference(None, field_type=int)
  c.optimizer = "adam"
  c.lr = 1e-3
  c.momentum = 0.9
  c.nesterov = False
  c.weight_decay = 0.0
  c.schedule = "cosine"
  c.decay_every_epochs = 30.0
  c.decay_epochs = ml_collections.FieldReference(None, field_type=tuple)
  c.decay_factor = 0.1
  c.warmup_epochs = 0.0
  c.group_lr = ml_collections.ConfigDict()
  c.clip_latent = ml_collections.FieldReference(None, field_type=float)
  c.grad_clip_norm = ml_collections.FieldReference(None, field_type=float)
  # What trains the binary kernels: "latent" (the optimizer above on float latent
  # weights) or "bop" (Helwegen et al. 2019, docs/bop.md: rate γ, threshold τ; Larq's
  # and the paper's defaults); γ's schedule: None = the learning rate's shape.
  c.kernel_optimizer = "latent"
  c.bop_gamma = 1e-4
  c.bop_threshold = 1e-8
  c.bop_gamma_schedule = ml_collections.FieldReference(None, field_type=str)
  c.loss_terms = ml_collections.ConfigDict()
  # Fine-tuning: start from the weights of another run's checkpoint (its --workdir;
  # init_from_step None = its latest), matched by layer path; the method's own
  # variables it lacks are derived from the loaded kernels (bnnjax.train.init_from).
  c.init_from = ml_collections.FieldReference(None, field_type=str)
  c.init_from_step = ml_collections.FieldReference(None, field_type=int)
  # Bookkeeping.
  c.log_every_steps = 50
  c.checkpoint_every_steps = 200
  c.eval_every_steps = 0
  c.histogram_every_steps = 0  # latent-weight histograms (BONN Figs. 3-4); 0 = off
  # Flip ratio, saturation and gradient/update norms are logged for the whole model;
  # True adds them per layer (about 100 more metrics for ResNet-18).
  c.diagnostics_per_layer = False
  c.keep_checkpoints = 2
  c.progress = True
  c.tensorboard = True
  return c


def group_size_methods() -> tuple[str, ...]:
  """The methods whose number is a group size (cross-filter's ``bw_cf``, ``xnor_cf``)."""
  return methods.names(number_field="group_size")


def takes_group_size(method: str) -> bool:
  """Whether ``method`` (without a number appended) needs ``c.group_size``."""
  name, number = methods.parse(method)
  return number is None and methods.get(name).number_field == "group_size"


def set_method(c: ml_collections.ConfigDict, method: str, n: int = 0) -> None:
  """Sets ``c.method`` (and ``c.group_size`` for cross-filter methods from ``n``)."""
  c.method = method
  if takes_group_size(method):
    if n < 1:
      raise ValueError(f"Config argument n={n}: method={method!r} needs n >= 1.")
    c.group_size = n
  elif n:
    raise ValueError(f"Config argument n={n} applies only to "
                     f"{list(group_size_methods())}, not method={method!r}.")


def imagenet_paper(c: ml_collections.ConfigDict, *, batch_size: int, epochs: float,
                   optimizer: str, lr: float, weight_decay: float,
                   decay_every_epochs: float) -> None:
  """ImageNet at 224 with a step schedule (÷10 every ``decay_every_epochs``)."""
  c.dataset = "imagenet2012"
  c.batch_size = batch_size
  c.num_epochs = epochs
  c.optimizer = optimizer
  c.lr = lr
  c.weight_decay = weight_decay
  c.schedule = "step"
  c.decay_every_epochs = decay_every_epochs
  c.decay_factor = 0.1
  c.eval_batch_size = 250
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2000


def cross_filter_config(arg, *, model_name: str, small_kwargs: dict,
                        paper_fn) -> ml_collections.ConfigDict:
  """The cross-filter paper's configs: ``method`` (``bw_cf``, ``xnor_cf``, ``bwn``,
  ``xnor``, ``fp``) and ``n`` as arguments, plus ``first``/``last`` to quantize the
  first/last layer (§6.3), ``paper`` for the paper's dataset and schedule, and
  ``dataset=...``. Default: the embedded MNIST with a narrow model, one epoch."""
  args = parse_arg(arg, method="xnor_cf", n=0, paper=False, first=False, last=False,
                   dataset="")
  c = base_config()
  c.model_name = model_name
  # n defaults to 2 for the cross-filter methods; given for another method, it errs.
  set_method(c, args.method, args.n or (2 if takes_group_size(args.method) else 0))
  c.quantize_first = args.first
  c.quantize_last = args.last
  if args.paper:
    paper_fn(c)
  else:
    small_cpu_default(c, **small_kwargs)
  if args.dataset:
    c.dataset = args.dataset
  return c


def cross_filter_sweep(add, arg, *, ns: tuple[int, ...] = (1, 2, 4, 8, 16)) -> None:
  """The cross-filter paper's Tables 3-4 as a sweep (``experiments.sweep``): BW-CF-n
  and XNOR-CF-n for each ``n`` in ``ns`` (n = 1 is BWN / XNOR), plus both with the
  first and last layers quantized too (§6.3; n = 2, which divides a 10-class output).
  ``method=bw_cf`` or ``method=xnor_cf`` in ``arg`` sweeps that method only; the
  other arguments of the config (``paper``, ``dataset``) apply to every point."""
  args = parse_arg(arg, method="", n=0, paper=False, first=False, last=False, dataset="")
  if args.method and not takes_group_size(args.method):
    raise ValueError(f"Config argument method={args.method!r}: the sweep varies n, so "
                     f"it needs one of {list(group_size_methods())} (or none for both).")
  swept = [args.method] if args.method else list(group_size_methods())
  for method in swept:
    for n in ns:
      add(name=f"{method}_{n}", method=method, group_size=n)
  for method in swept:
    add(name=f"{method}_2_first_last", method=method, group_size=2,
        quantize_first=True, quantize_last=True)


def add_bonn(c: ml_collections.ConfigDict, *, lam: float = 1e-4, theta: float = 1e-3,
             nu: float = 1e-4, w_lr: float, center_rate: float = 0.5,
             feature_start_epoch: float = 0.0, kernel_decoupled: bool = False,
             kernel_normalise: str = "sum") -> None:
  """BONN (docs/bonn.md, :mod:`bnnjax.methods.bonn`): ``method=bonn``, the kernel and
  feature loss terms with weights ``λ/2`` and ``θ/2``, and the modulation ``w``'s own
  learning rate (``group_lr.Modulation``).

  ``bonn_lambda``, ``bonn_theta``, ``bonn_nu``, ``bonn_center_rate`` and
  ``bonn_feature_start_epoch`` are config fields; the loss terms refer to them, so
  ``--config.bonn_lambda=0`` switches the kernel loss off. ``bonn_kernel_decoupled``:
  the kernel loss's gradient is applied after the optimizer at the learning rate
  (:mod:`bnnjax.train.loss_terms`, docs/bonn.md#investigation) instead of being added
  to the cross-entropy's. ``bonn_kernel_normalise``: ``"sum"`` (the paper's sum over
  every weight), ``"kernel_mean"`` or ``"layer_mean"`` (:func:`bnnjax.methods.bonn.kernel_term`).
  """
  c.method = bonn.NAME
  c.bonn_lambda = lam
  c.bonn_theta = theta
  c.bonn_nu = nu
  c.bonn_center_rate = center_rate
  c.bonn_feature_start_epoch = feature_start_epoch
  c.bonn_kernel_decoupled = kernel_decoupled
  c.bonn_kernel_normalise = kernel_normalise
  c.loss_terms.bayesian_kernel = ml_collections.ConfigDict({
      "weight": c.get_ref("bonn_lambda") * 0.5, "nu": c.get_ref("bonn_nu"),
      "decoupled": c.get_ref("bonn_kernel_decoupled"),
      "normalise": c.get_ref("bonn_kernel_normalise")})
  c.loss_terms.bayesian_feature = ml_collections.ConfigDict({
      "weight": c.get_ref("bonn_theta") * 0.5,
      "center_rate": c.get_ref("bonn_center_rate"),
      "start_epoch": c.get_ref("bonn_feature_start_epoch")})
  c.group_lr[bonn.Modulation.__name__] = w_lr
  c.histogram_every_steps = 200


def is_bonn(method: str) -> bool:
  """Whether ``method`` is BONN (any spelling)."""
  return methods.get(method) is bonn.METHOD


def small_cpu_default(c: ml_collections.ConfigDict, *, epochs: float = 1.0,
                      **model_kwargs) -> None:
  """The embedded-data default: a narrow model, Adam 2e-3 with cosine decay, a few
  minutes on a 2-core CPU."""
  c.model_kwargs.update(model_kwargs)
  c.num_epochs = epochs
  c.lr = 2e-3
  c.eval_batch_size = 1000


def cifar_step_schedule(c: ml_collections.ConfigDict, *, augment: bool) -> None:
  """The cross-filter paper's CIFAR-10 schedule (§5.2.1): batch 128, 320 epochs, lr 0.01
  ÷10 at epochs 120, 200, 240 and 280; SGD with momentum 0.9 (the optimizer is not
  named: an assumption)."""
  c.dataset = "cifar10"
  c.augment = augment
  c.batch_size = 128
  c.num_epochs = 320.0
  c.optimizer = "sgd"
  c.lr = 0.01
  c.schedule = "step"
  c.decay_epochs = (120, 200, 240, 280)
  c.checkpoint_every_steps = 2000
