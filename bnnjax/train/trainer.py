"""The trainer: ``train_and_evaluate(config, workdir)``.

One readable loop in marked sections (big_vision style): set-up (config checks, data,
model, loss terms, optimizer), restore, a jit-compiled train step over the NNX state
(split once, plain ``jax.jit``, donated buffers), logging with NaN checks, checkpoints,
and the final evaluation. The model is split into ``params`` (every ``nnx.Param``,
including ``LatentWeight`` and ``ScaleFactor``) and ``rest`` (batch statistics, RNG
state and any other variables, e.g. BONN's class centres); the optimizer sees only
``params``. Training is data-parallel over every device of every process
(:mod:`bnnjax.train.parallel`): replicated state, batches sharded on a ``"data"`` mesh
axis; only process 0 writes metrics and results.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import threading
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from bnnjax import data as data_lib
from bnnjax import methods
from bnnjax import models
from bnnjax import nn
from bnnjax import packed as packed_lib
from bnnjax.flat_tree import FlatTree
from bnnjax.train import bop as bop_lib
from bnnjax.train import checkpoint as ckpt_lib
from bnnjax.train import diagnostics
from bnnjax.train import init_from
from bnnjax.train import loss_terms as loss_lib
from bnnjax.train import optim
from bnnjax.train import parallel
from bnnjax.train import validation
from bnnjax.train import workdir_lock
from bnnjax.train.validation import ConfigError
from bnnjax.train.writers import MetricWriter
from bnnjax.tree_paths import path_name

# Fields that may change between a run and its resumption without changing results.
RESUMABLE_FIELDS = ("log_every_steps", "checkpoint_every_steps", "progress", "data_dir",
                    "eval_every_steps", "keep_checkpoints", "histogram_every_steps",
                    "diagnostics_per_layer", "binary_compute")


# Fields that configs add on top of base_config() after runs were saved without them,
# with the value those runs had: a saved run lacking one resumes at this value.
LATER_FIELD_DEFAULTS = {"bonn_kernel_decoupled": False, "bonn_kernel_normalise": "sum"}
# The same for the keys of ``loss_terms`` entries.
LATER_TERM_DEFAULTS = {"decoupled": False, "normalise": "sum"}


def _comparable(cfg: dict) -> dict:
  """``cfg`` (a config as JSON) with the defaults of later fields dropped: fields of
  :data:`LATER_FIELD_DEFAULTS` at their value and the keys of ``loss_terms`` entries
  at :data:`LATER_TERM_DEFAULTS` (a run saved before loss terms could be decoupled or
  normalised)."""
  out = {k: v for k, v in cfg.items()
         if not (k in LATER_FIELD_DEFAULTS and v == LATER_FIELD_DEFAULTS[k])}
  if isinstance(out.get("loss_terms"), dict):
    out["loss_terms"] = {
        name: ({k: v for k, v in kw.items()
                if not (k in LATER_TERM_DEFAULTS and v == LATER_TERM_DEFAULTS[k]
                        and type(v) is type(LATER_TERM_DEFAULTS[k]))}
               if isinstance(kw, dict) else kw)
        for name, kw in out["loss_terms"].items()}
  return out


@functools.lru_cache(maxsize=None)
def _defaults() -> ml_collections.ConfigDict:
  from configs import common
  return common.base_config()


def setting(config, field: str):
  """``config[field]``, or the default of ``configs/common.py``'s ``base_config()``
  when ``config`` has no such field (a config built by hand, or saved before the field
  existed): the trainer's defaults are base_config's, kept in one place."""
  return config[field] if field in config else _defaults()[field]


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  rest: Any
  opt_state: Any


# ----------------------------------------------------------------------------- set-up
def quant_spec(config) -> nn.QuantSpec:
  """The layers' :class:`QuantSpec` from ``config.method`` and its options
  (:func:`bnnjax.methods.from_config`; errors name the config field)."""
  return methods.from_config(config)


def build_model(config, info: data_lib.DatasetInfo) -> nnx.Module:
  """The model named ``config.model_name``, its layers quantized by the spec resolved
  once from ``config.method``; configuration errors name their field.

  A method's parameter that does not fit a layer (a cross-filter group size that does
  not divide its filters) is a :class:`bnnjax.methods.SpecError`, reported under the
  config field that set it (:func:`bnnjax.methods.config_error`).
  """
  spec = quant_spec(config)
  kwargs = dict(config.get("model_kwargs", None) or {})
  try:
    return models.get_model(
        config.model_name, num_classes=info.num_classes, input_shape=info.image_shape,
        spec=spec, quantize_first=config.get("quantize_first", False),
        quantize_last=config.get("quantize_last", False),
        rngs=nnx.Rngs(params=config.seed, dropout=config.seed + 1), **kwargs)
  except methods.SpecError as e:
    raise methods.config_error(e, config) from e


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything ``config`` determines before training: data info, model, loss, optimizer.

  ``state`` is the freshly initialised :class:`TrainState`; ``graphdef`` merges with
  ``state.params`` and ``state.rest`` into the model.
  """
  info: data_lib.DatasetInfo
  steps_per_epoch: int
  total_steps: int
  graphdef: Any
  state: TrainState
  tx: optax.GradientTransformation
  terms: list
  schedules: dict


def set_up(config, info: data_lib.DatasetInfo | None = None) -> Setup:
  """Checks ``config`` and builds the model, loss terms and optimizer it names.

  ``info`` describes the data in place of ``config.dataset``'s (which is then neither
  read nor prepared): benchmarks on synthetic batches of any geometry, e.g. ImageNet's
  224×224×3 and 1000 classes on a machine without ImageNet.

  Raises:
    ValueError: for a configuration error; the message names the field
      (:class:`~bnnjax.train.validation.ConfigError` for the field checks).
  """
  # Every field, the optimizer's included (optim.validate runs in make_optimizer).
  validation.validate(config)
  if info is None:
    info = data_lib.dataset_info(config.dataset, data_dir=setting(config, "data_dir"),
                                 image_size=setting(config, "image_size"))
  model = build_model(config, info)
  steps_per_epoch, total_steps = _steps(config, info)
  terms = loss_lib.build_loss_terms(model, config, loss_lib.LossContext(
      input_shape=info.image_shape, num_classes=info.num_classes,
      steps_per_epoch=steps_per_epoch))
  decoupled = [t.name for t in terms if t.decoupled]
  if decoupled:
    try:  # a decoupled term that reads the batch or outputs fails here, not at step 1
      loss_lib.decoupled_loss(terms, model)
    except ValueError as e:
      raise ConfigError(str(e)) from e
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx, schedules = optim.make_optimizer(config, params, steps_per_epoch, total_steps)
  if decoupled and optim.uses_bop(config):
    raise ConfigError(
        f"config.loss_terms.{decoupled[0]}.decoupled=True with "
        "config.kernel_optimizer='bop': a decoupled term is applied at the learning "
        "rate, and Bop's kernels have none; allowed values are decoupled=False or "
        "kernel_optimizer='latent'.")
  if optim.uses_bop(config):  # Bop trains ±1 kernels from step 0 (docs/bop.md)
    params = bop_lib.binarize_kernels(params)
  state = TrainState(jnp.zeros((), jnp.int32), params, rest, tx.init(params))
  return Setup(info, steps_per_epoch, total_steps, graphdef, state, tx, terms, schedules)


def load_trained(workdir: str, step: int | None = None, **overrides):
  """The model trained in ``workdir``, restored from its checkpoint at ``step``.

  Reads ``workdir/config.json`` (written by :func:`train_and_evaluate`), rebuilds the
  model, optimizer and loss terms it names, and restores the checkpoint (default: the
  latest). ``overrides`` replace config fields that do not change the state's
  structure, e.g. ``data_dir``.

  Returns:
    ``(model, config, info)``: the NNX model with the trained parameters and batch
    statistics (call it with ``train=False`` for inference), the run's config as a
    ``ml_collections.ConfigDict``, and its :class:`~bnnjax.data.DatasetInfo`.

  Raises:
    FileNotFoundError: when ``workdir`` has no config.json or no checkpoint.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{path} does not exist: {workdir!r} is not a workdir written by "
        "experiments.run / train_and_evaluate.")
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  for k, v in overrides.items():
    config[k] = v
  setup = set_up(config)
  checkpointer = ckpt_lib.Checkpointer(workdir, max(setting(config, "keep_checkpoints"), 1))
  try:
    if checkpointer.latest_step() is None:
      raise FileNotFoundError(f"{workdir} has a config.json but no checkpoint.")
    state = checkpointer.restore(setup.state, step, fallback=False)
  finally:
    checkpointer.close()
  model = nnx.merge(setup.graphdef, state.params, state.rest)
  return model, config, setup.info


def _check_workdir(workdir: str) -> None:
  """Refuses a ``--workdir`` that names a file (before anything is created)."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir={workdir} is a file, not a directory; give a new or "
                      "existing directory. Nothing was changed.")


def _check_init_from(config, workdir: str) -> None:
  """Refuses a ``config.init_from`` that is not a trained run, lacks
  ``init_from_step``, or is ``workdir`` itself (before anything is written). A run
  that already has a checkpoint resumes from it and never reads its source again, so
  the source is not checked then (it may have been deleted)."""
  source = setting(config, "init_from")
  if source is None:
    return
  if os.path.abspath(source) == os.path.abspath(workdir):
    raise ConfigError(
        f"config.init_from={source!r} is this run's own --workdir; allowed values are "
        "another run's workdir (to resume this run, leave init_from unset).")
  if ckpt_lib.saved_steps(workdir):
    return
  init_from.source_step(source, setting(config, "init_from_step"))


def config_differences(workdir: str, config) -> dict[str, tuple[Any, Any]] | None:
  """The fields that matter in which ``config`` differs from the run in ``workdir``.

  Compares ``workdir/config.json`` (written by :func:`train_and_evaluate`) with
  ``config`` as JSON, leaving out :data:`RESUMABLE_FIELDS`. A field that one of them
  lacks counts at ``base_config()``'s default, as :func:`setting` reads it (a run saved
  before ``kernel_optimizer`` existed resumes as ``"latent"``, which it was), or at its
  :data:`LATER_FIELD_DEFAULTS` value.

  Returns:
    ``{field: (saved value, current value)}`` sorted by field (``None`` for a field
    that one of them and base_config() lack), empty when the run can be resumed
    with ``config``; ``None`` when ``workdir`` holds no config.json.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = json.load(f)
  saved = _comparable(saved)
  current = _comparable(json.loads(config.to_json_best_effort()))
  # A field missing from either side reads as base_config()'s default, or, for a
  # field added later, as the value runs had before it existed.
  defaults = {**json.loads(_defaults().to_json_best_effort()), **LATER_FIELD_DEFAULTS}
  keys = (set(saved) | set(current)) - set(RESUMABLE_FIELDS)
  pairs = {k: (saved.get(k, defaults.get(k)), current.get(k, defaults.get(k)))
           for k in sorted(keys)}
  return {k: (a, b) for k, (a, b) in pairs.items() if a != b}


def _check_workdir_config(workdir: str, config) -> bool:
  """Refuses to resume a run whose saved config differs in a field that matters;
  writes ``config.json`` for a new run. Returns True when it wrote it."""
  path = os.path.join(workdir, "config.json")
  diff = config_differences(workdir, config)
  if diff is not None:
    if diff:
      details = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
      raise ConfigError(
          f"--workdir={workdir} holds a run with a different config ({details}). "
          "Resume it with its own config, or use a new --workdir; nothing was "
          "changed.")
    return False
  if parallel.is_main_process():
    os.makedirs(workdir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(json.loads(config.to_json_best_effort()), f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return True
  return False


def _steps(config, info) -> tuple[int, int]:
  steps_per_epoch = max(_num_train(config, info) // config.batch_size, 1)
  if setting(config, "num_train_steps"):
    total = int(config.num_train_steps)
  else:
    total = int(round(config.num_epochs * steps_per_epoch))
  if total < 1:
    raise ConfigError(
        f"config.num_epochs={config.num_epochs!r} gives no training step "
        f"({steps_per_epoch} steps per epoch); allowed values give at least one step "
        "(or set config.num_train_steps).")
  return steps_per_epoch, total


def _num_train(config, info) -> int:
  n = setting(config, "num_train_examples")
  return min(n, info.num_train) if n else info.num_train


# ------------------------------------------------------------------------ the steps
def _forward(graphdef, params, rest, batch, train):
  # Rebuild the non-Param variables at this trace level: BatchNorm (and loss terms)
  # update them in place, which NNX allows only for variables of the current trace.
  rest = jax.tree.map(lambda x: x, rest)
  model = nnx.merge(graphdef, params, rest)
  logits, features = model(batch["image"], train=train, return_features=True)
  return model, {"logits": logits, "features": features}


def _accuracy_counts(logits, labels, mask=None):
  mask = jnp.ones(labels.shape, jnp.float32) if mask is None else mask
  top1 = jnp.sum((jnp.argmax(logits, -1) == labels) * mask)
  k = min(5, logits.shape[-1])
  _, topk = jax.lax.top_k(logits, k)
  top5 = jnp.sum(jnp.any(topk == labels[:, None], axis=-1) * mask)
  return top1, top5


def make_train_step(graphdef, tx, terms, schedules, latent_flags, clip_latent, mesh,
                    per_layer_diagnostics=False, leaf_groups=None,
                    float_precision=jax.lax.Precision.DEFAULT):
  """The jit-compiled step: loss (CE + Σ weight·term), gradient, update, clipping, and
  the diagnostics of :func:`bnnjax.train.diagnostics.training_diagnostics` (flip ratio and
  saturation of the binary weights, gradient and update norms).

  The layers with a float operand compute at ``float_precision``
  (``config.train_float_precision``, :func:`bnnjax.nn.layers.train_float_precision`;
  the eval step keeps ``HIGHEST``).

  Decoupled terms (:mod:`bnnjax.train.loss_terms`) are left out of the gradient the
  optimizer sees; their gradient ``g_t`` is applied after it, each parameter at its
  group's learning rate: ``update − schedules[leaf_groups[i]](step) · g_t``
  (``leaf_groups``: :func:`bnnjax.train.optim.leaf_groups`). ``loss/total`` is the
  whole objective, coupled and decoupled terms together."""
  coupled = [t for t in terms if not t.decoupled]
  decoupled = [t for t in terms if t.decoupled]
  if decoupled and leaf_groups is None:
    raise ValueError("make_train_step: decoupled loss terms need leaf_groups.")

  def loss_fn(params, rest, batch, step):
    model, outputs = _forward(graphdef, params, rest, batch, train=True)
    outputs["step"] = step
    labels = batch["label"]
    ce = optax.softmax_cross_entropy_with_integer_labels(outputs["logits"], labels).mean()
    metrics = {"loss/ce": ce}
    total = ce
    for term in coupled:
      value = term.fn(model, batch, outputs)
      metrics[f"loss/{term.name}"] = value
      total = total + term.weight * value
    metrics["loss/total"] = total  # step_fn adds the decoupled terms
    top1, top5 = _accuracy_counts(outputs["logits"], labels)
    n = labels.shape[0]
    metrics["train/top1"] = top1 / n
    metrics["train/top5"] = top5 / n
    new_rest = nnx.split(model, nnx.Param, ...)[2]
    return total, (metrics, new_rest)

  def decoupled_loss(params, rest):
    return loss_lib.decoupled_loss(decoupled, nnx.merge(graphdef, params, rest))

  def step_fn(state: TrainState, batch):
    with nn.layers.float_precision(float_precision):  # as the step is traced
      return _step(state, batch)

  def _step(state: TrainState, batch):
    grads, (metrics, rest) = jax.grad(loss_fn, has_aux=True)(
        state.params, state.rest, batch, state.step)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    if decoupled:
      extra, values = jax.grad(decoupled_loss, has_aux=True)(state.params, state.rest)
      for term in decoupled:
        metrics[f"loss/{term.name}"] = values[term.name]
        metrics["loss/total"] = metrics["loss/total"] + term.weight * values[term.name]
      rates = {name: sched(state.step) for name, sched in schedules.items()}
      leaves, treedef = jax.tree.flatten(updates)
      extra = jax.tree.leaves(extra)
      updates = jax.tree.unflatten(treedef, [
          u - (rates[g] * e).astype(u.dtype)
          for u, e, g in zip(leaves, extra, leaf_groups)])
    params = optax.apply_updates(state.params, updates)
    if clip_latent:
      leaves, treedef = jax.tree.flatten(params)
      leaves = [jnp.clip(x, -clip_latent, clip_latent) if f else x
                for x, f in zip(leaves, latent_flags)]
      params = jax.tree.unflatten(treedef, leaves)
    metrics.update(diagnostics.training_diagnostics(
        state.params, params, grads, updates, clip=clip_latent or 1.0,
        inclusive=bool(clip_latent), per_layer=per_layer_diagnostics))
    for name, sched in schedules.items():
      metrics["lr" if name == "default" else f"lr/{name}"] = sched(state.step)
    return TrainState(state.step + 1, params, rest, opt_state), metrics

  # State and metrics stay replicated; the batch arrives sharded on "data".
  return jax.jit(step_fn, donate_argnums=(0,), out_shardings=parallel.replicated(mesh))


def train_step_for(config, setup: Setup, mesh):
  """The train step :func:`train_and_evaluate` runs for ``config``:
  :func:`make_train_step` on ``setup`` with the config's latent-weight clipping,
  diagnostics, learning-rate groups (BONN's decoupled kernel loss needs them) and
  ``train_float_precision``. Benchmarks time this same step."""
  variables = jax.tree_util.tree_leaves_with_path(
      setup.state.params, is_leaf=lambda x: isinstance(x, nnx.Variable))
  return make_train_step(
      setup.graphdef, setup.tx, setup.terms, setup.schedules,
      [isinstance(v, nn.LatentWeight) for _, v in variables],
      setting(config, "clip_latent"), mesh, setting(config, "diagnostics_per_layer"),
      optim.leaf_groups(config, setup.state.params),
      nn.layers.train_float_precision(setting(config, "train_float_precision")))


def eval_model_is_packed(config, platform: str | None = None) -> bool:
  """Whether the eval step runs the packed model (:func:`bnnjax.packed.pack_model`)
  rather than the eval-mode model, by ``config.binary_compute``: ``"packed"`` yes,
  ``"float"`` no, ``"auto"`` where :func:`bnnjax.nn.layers.packed_inference_is_faster`
  says so for the platform. Either way the logits are the same function (the ±1
  products are integers on both paths; see :mod:`bnnjax.packed.model`)."""
  compute = setting(config, "binary_compute")
  if compute == "auto":
    return nn.layers.packed_inference_is_faster(platform)
  return compute == "packed"


class EvalStep:
  """The jit-compiled eval step, on the eval-mode model or on its packed copy.

  ``prepare(state)`` runs once per evaluation and returns what every batch needs:
  the eval-mode ``(params, rest)``, or with ``packed`` the state of the packed model,
  built by :func:`bnnjax.packed.pack_model` inside one jit (the binary kernels' signs
  packed into ``uint32`` words, weight scales folded, once for all batches).
  ``eval_step(prepared, batch)`` (after ``prepare``, which traces the packed model's
  graph) returns the summed loss, top-1/top-5 counts and the example count of the
  (masked) batch. ``packed=True`` on a model without a binary
  layer of ±1 operands (a full-precision model, ternary kernels) evaluates the
  eval-mode model: there is nothing to pack.
  """

  def __init__(self, graphdef, mesh, *, packed: bool = False, params=None, rest=None):
    self.packed = packed and params is not None and packed_lib.packable(
        nnx.merge(graphdef, params, rest))
    self._packed_graphdef = None  # set when prepare_packed is traced

    def prepare_packed(params, rest):
      model = packed_lib.pack_model(nnx.merge(graphdef, params, rest))
      self._packed_graphdef, state = nnx.split(model)
      return state

    def eval_fn(prepared, batch):
      prepared = prepared.tree()
      if self.packed:
        model = nnx.merge(self._packed_graphdef, prepared)
        logits = model(batch["image"], train=False)
      else:
        logits = _forward(graphdef, *prepared, batch, train=False)[1]["logits"]
      mask = batch["mask"]
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
      top1, top5 = _accuracy_counts(logits, batch["label"], mask)
      return {"loss": jnp.sum(loss * mask), "top1": top1, "top5": top5,
              "count": jnp.sum(mask)}
    self._prepare_packed = jax.jit(prepare_packed,
                                   out_shardings=parallel.replicated(mesh))
    self._step = jax.jit(eval_fn, out_shardings=parallel.replicated(mesh))

  def prepare(self, state: TrainState) -> FlatTree:
    """What every batch of one evaluation needs, flattened once
    (:mod:`bnnjax.flat_tree`: a step then dispatches a list of arrays, not ~140 NNX
    Variables to flatten in Python)."""
    if self.packed:
      return FlatTree.of(self._prepare_packed(state.params, state.rest))
    return FlatTree.of((state.params, state.rest))

  def __call__(self, prepared, batch) -> dict[str, jax.Array]:
    return self._step(prepared, batch)


def make_eval_step(graphdef, mesh, *, packed: bool = False, params=None,
                   rest=None) -> EvalStep:
  """:class:`EvalStep` (``packed``: on the packed model; ``params``/``rest`` tell
  whether the model has anything to pack)."""
  return EvalStep(graphdef, mesh, packed=packed, params=params, rest=rest)


def evaluate(eval_step, state, config, info, mesh) -> dict[str, float]:
  """Top-1/top-5 and loss over the test split (each example once).

  Every batch has ``eval_batch_size`` rows (the last one padded and masked), split
  over the processes and devices of ``mesh``.
  """
  pipe = data_lib.make_pipeline(
      config.dataset, split=info.splits[1], batch_size=setting(config, "eval_batch_size"),
      train=False, seed=config.seed, data_dir=setting(config, "data_dir"),
      num_examples=setting(config, "num_test_examples"),
      image_size=setting(config, "image_size"), shard=parallel.process_shard(),
      pad_remainder=True)
  totals = {"loss": 0.0, "top1": 0.0, "top5": 0.0, "count": 0.0}
  prepared = eval_step.prepare(state)
  for batch in pipe:
    out = parallel.to_host_tree(eval_step(prepared, parallel.shard_batch(batch, mesh)))
    for k in totals:
      totals[k] += float(out[k])
  n = max(totals["count"], 1.0)
  return {"test/loss": totals["loss"] / n, "test/top1": totals["top1"] / n,
          "test/top5": totals["top5"] / n, "test/count": totals["count"]}


# ----------------------------------------------------------------------------- loop
class Interrupted(Exception):
  """Training was stopped by SIGTERM or SIGINT; the checkpoint of ``step`` is kept."""

  def __init__(self, message: str, signum: int, step: int):
    super().__init__(message)
    self.signum = signum
    self.step = step


class _StopSignals:
  """Turns the first SIGTERM / SIGINT into a flag that the loop checks after each step
  (it then saves and stops); a second signal acts as it would have without this.
  Installed only in the main thread."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum: int | None = None
    self._old: dict = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._old[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.signum is None:
      self.signum = signum
      return
    old = self._old.get(signum, signal.SIG_DFL)
    self.__exit__()
    if callable(old):
      old(signum, frame)
    else:
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    self._old = {}


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
  """Trains ``config`` in ``workdir`` (resuming from its last checkpoint) and evaluates.

  Returns the final test metrics; also writes ``workdir/results.json``.

  Every config field is checked before anything is written or compiled. The workdir is
  locked for this process (:mod:`bnnjax.train.workdir_lock`). A run that fails before
  its first checkpoint removes the ``config.json`` it wrote, so a corrected config is
  not refused. SIGTERM / SIGINT save a checkpoint of the current step and raise
  :class:`Interrupted`. An unreadable checkpoint is reported and the next older one
  used.

  Raises:
    ConfigError: for a configuration error (the message names the field), before
      anything is written.
    WorkdirBusy: another process trains in ``workdir``.
    FloatingPointError: when the loss becomes NaN/Inf; the last good checkpoint is kept.
    Interrupted: SIGTERM / SIGINT; the checkpoint of the step reached is kept.
  """
  # --- Config checks and set-up: everything that can fail on a bad config comes
  # first, and nothing is written before it passes.
  try:
    setup = set_up(config)
    parallel.check_batch_size(config.batch_size, "config.batch_size")
    parallel.check_batch_size(setting(config, "eval_batch_size"), "config.eval_batch_size")
    _check_init_from(config, workdir)
  except ConfigError:
    raise
  except (ValueError, TypeError) as e:  # a model / data / loss-term argument
    raise ConfigError(str(e)) from e
  _check_workdir(workdir)
  main = parallel.is_main_process()
  lock = workdir_lock.WorkdirLock(workdir, enabled=main).acquire()
  try:
    if lock.previous:
      print(f"Note: the last run in {workdir} ({lock.previous}) ended without releasing "
            "its lock (killed or crashed); taking it over.", flush=True)
    return _train_locked(config, workdir, setup, main)
  finally:
    lock.release()


def _train_locked(config, workdir: str, setup: Setup, main: bool) -> dict[str, float]:
  wrote_config = _check_workdir_config(workdir, config)
  checkpointer = None
  try:
    checkpointer = ckpt_lib.Checkpointer(workdir, setting(config, "keep_checkpoints"),
                                         owner=True)
    return _train(config, workdir, setup, main, checkpointer)
  except BaseException:
    # A run that never checkpointed leaves no config.json to block a corrected rerun.
    if checkpointer is not None:
      checkpointer.close()
    if (wrote_config and main and (checkpointer is None
                                   or checkpointer.latest_step() is None)):
      try:
        os.remove(os.path.join(workdir, "config.json"))
      except OSError:
        pass
    raise


def _init_from(config, setup: Setup, state: TrainState):
  """``(state, report)``: the fresh ``state`` with the weights of the run
  ``config.init_from`` (:mod:`bnnjax.train.init_from`) and a fresh optimizer state."""
  params, rest, report = init_from.load(
      setup.graphdef, state.params, state.rest, setting(config, "init_from"),
      setting(config, "init_from_step"))
  if optim.uses_bop(config):  # Bop trains ±1 kernels (as set_up does for a fresh run)
    params = bop_lib.binarize_kernels(params)
  return TrainState(state.step, params, rest, setup.tx.init(params)), report


def _train(config, workdir, setup: Setup, main: bool, checkpointer) -> dict[str, float]:
  info, steps_per_epoch, total_steps = setup.info, setup.steps_per_epoch, setup.total_steps
  graphdef = setup.graphdef
  variables = jax.tree_util.tree_leaves_with_path(
      setup.state.params, is_leaf=lambda x: isinstance(x, nnx.Variable))
  latent_names = {i: path_name(path) for i, (path, v) in enumerate(variables)
                  if isinstance(v, nn.LatentWeight)}
  mesh = parallel.make_mesh()
  state = setup.state
  say = (lambda *a, **k: print(*a, **k)) if main else (lambda *a, **k: None)

  # --- Restore (an unreadable checkpoint is reported and the next older one used).
  if checkpointer.latest_step() is not None:
    try:
      state = checkpointer.restore(state, fallback=True, report=say)
    except ckpt_lib.CheckpointError as e:
      raise ckpt_lib.CheckpointError(
          f"{e} No readable checkpoint is left in {checkpointer.directory}; run the "
          "same command again to train from step 0.") from e
    say(f"Resuming from the checkpoint of step {int(state.step)} in {workdir}", flush=True)
  elif setting(config, "init_from") is not None:
    state, report = _init_from(config, setup, state)
    say(report.summary(), flush=True)
  start = int(state.step)
  state = parallel.replicate(state, mesh)

  train_step = train_step_for(config, setup, mesh)
  eval_step = make_eval_step(graphdef, mesh, packed=eval_model_is_packed(config),
                             params=setup.state.params, rest=setup.state.rest)
  # A finished run only re-evaluates: it adds no duplicate records.
  writer = MetricWriter(workdir, tensorboard=setting(config, "tensorboard"),
                        enabled=main and start < total_steps, resume_step=start)
  pipe = data_lib.make_pipeline(
      config.dataset, split=info.splits[0], batch_size=config.batch_size, train=True,
      seed=config.seed, data_dir=setting(config, "data_dir"),
      num_examples=setting(config, "num_train_examples"),
      image_size=setting(config, "image_size"), augment=setting(config, "augment"),
      shard=parallel.process_shard())

  log_every = setting(config, "log_every_steps")
  ckpt_every = setting(config, "checkpoint_every_steps")
  eval_every = setting(config, "eval_every_steps")
  pending: list[dict] = []
  last_log = (time.perf_counter(), start)

  def flush(step: int) -> dict[str, float]:
    """Writes the averaged pending metrics; stops the run on a NaN/Inf loss."""
    nonlocal pending, last_log
    if not pending:
      return {}
    host = parallel.to_host_tree(pending)
    pending = []
    avg = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
    now = time.perf_counter()
    avg["examples_per_second"] = (step - last_log[1]) * config.batch_size / (now - last_log[0])
    avg["epoch"] = step / steps_per_epoch
    last_log = (now, step)
    writer.write(step, avg)
    if not all(np.isfinite(m["loss/total"]) for m in host):
      writer.flush()
      checkpointer.wait()
      kept = checkpointer.latest_step()
      raise FloatingPointError(
          f"The training loss became NaN or Inf before step {step}; stopping. "
          + (f"The last good checkpoint (step {kept}) is kept in {checkpointer.directory}."
             if kept is not None else "No checkpoint had been written yet."))
    return avg

  hist_every = setting(config, "histogram_every_steps")
  hist_path = os.path.join(workdir, "latent_histograms.jsonl")

  def record_histograms(step: int) -> None:
    """Appends per-layer latent-weight histograms (BONN Figs. 3-4) at ``step``."""
    if not main:
      return
    leaves = jax.tree.leaves(state.params)
    layers = [(name, parallel.to_host(leaves[i])) for i, name in latent_names.items()]
    with open(hist_path, "a") as f:
      f.write(json.dumps(diagnostics.histogram_record(step, layers)) + "\n")

  def stop(signum: int, step: int):
    name = signal.Signals(signum).name
    return Interrupted(
        f"Stopped by {name} at step {step} of {total_steps}: the checkpoint of step "
        f"{step} is kept in {checkpointer.directory}; run the same command to resume.",
        signum, step)

  # --- Train.
  try:
    with _StopSignals() as signals:
      if hist_every and latent_names and start == 0:
        record_histograms(0)
      progress = tqdm(total=total_steps, initial=start,
                      disable=not (main and setting(config, "progress")),
                      desc=f"{config.model_name}/{config.method}", dynamic_ncols=True)
      batches = pipe.iterate(start)
      for step in range(start + 1, total_steps + 1):
        batch = parallel.shard_batch(next(batches), mesh)
        state, metrics = train_step(state, batch)
        pending.append(metrics)
        progress.update(1)
        if step % log_every == 0 or step == total_steps:
          logged = flush(step)
          progress.set_postfix(loss=f"{logged['loss/total']:.4f}",
                               top1=f"{logged['train/top1']:.3f}")
        stopping = signals.signum is not None or (
            jax.process_count() > 1 and checkpointer.reached_preemption(step))
        if step % ckpt_every == 0 or step == total_steps or stopping:
          flush(step)  # never checkpoint a state whose loss was not checked
          checkpointer.save(step, state)  # asynchronous: training goes on
          if stopping:
            checkpointer.wait()
        if hist_every and latent_names and (step % hist_every == 0 or step == total_steps):
          record_histograms(step)
        if stopping:
          progress.close()
          raise stop(signals.signum or signal.SIGTERM, step)
        if eval_every and step % eval_every == 0 and step != total_steps:
          writer.write(step, evaluate(eval_step, state, config, info, mesh))
      progress.close()

      # --- Final evaluation (the final checkpoint is written meanwhile).
      results = evaluate(eval_step, state, config, info, mesh)
      writer.write(total_steps, results)
      if signals.signum is not None:
        raise stop(signals.signum, total_steps)
  finally:
    writer.close()
    checkpointer.close()
  results = {**results, "step": total_steps}
  if not main:
    return results
  if os.path.exists(hist_path):
    diagnostics.plot_latent_histograms(hist_path, os.path.join(workdir, "plots"))
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  print(f"FINAL {config.model_name} {config.method} on {config.dataset}: "
        f"test top-1 {results['test/top1']:.2%}, top-5 {results['test/top5']:.2%} "
        f"({int(results['test/count'])} examples, {total_steps} steps) -> {workdir}",
        flush=True)
  return results
