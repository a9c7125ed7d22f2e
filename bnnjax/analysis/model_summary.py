"""What a binarised model costs, layer by layer: ``summary(model, input_shape)``.

Larq's ``models.summary`` is the reference (bits, memory and MACs per layer, then the
model totals); this one adds the costs the seed papers argue about: binary word
operations, the full-precision multiplications of the scaling factors (XNOR-Net's
``K`` and ``α``, cross-filter's shared ``α_g``, XNOR-Net++'s ``Γ``, BONN's
``1/mean(w)``) and each layer's theoretical speed-up by its paper's formula
(:mod:`bnnjax.analysis.speedup`).

Counting rules, for a conv with kernel ``(kh, kw, c, o)``, input ``h_in × w_in`` and
output ``h × w × o`` (a dense layer is the case ``kh = kw = h = w = 1``, ``c = d_in``,
``o = d_out``), per example:

* **Parameters by bit-width** (what inference stores): a binary kernel counts
  ``kh·kw·c·o`` 1-bit parameters, any other tensor its dtype's bits (32 for float32).
  Analytic scales are stored at inference, so they count although no variable holds
  them: XNOR's ``α`` (``o`` floats), cross-filter's ``α_g`` (``o/n``), BONN's folded
  ``1/mean(w)`` (1). XNOR-Net++'s ``Γ`` counts its stored factors (``α``, ``β``,
  ``γ``). Batch norm counts scale, bias, mean and variance (as Larq/Keras do).
  BONN's modulation ``w``, its priors ``μ``/``log σ`` and class centres are only needed
  for training: reported as ``training_only_params``, not in the model size.
* **Memory**: ``Σ bits / 8`` bytes (Larq's packed size); the float32 equivalent is
  ``4`` bytes per parameter; compression ratio = float32 size / packed size.
* **MACs**: ``h·w·kh·kw·c·o`` (padding ignored, as Larq), at the precision of the
  wider operand (Larq's rule): 1-bit only when both input and kernel are binary.
* **Binary operations**: L-bit XNOR-popcount word operations of a bit-packed kernel,
  ``h·w·o·⌈kh·kw·c / L⌉`` (packed along the contraction axis,
  docs/packed.md#cost-counting).
* **Full-precision multiplications** (``fp_mults``): one per MAC of a layer whose input
  and kernel are both full precision (a ±1 operand needs none), plus

  - ``scale_mults``: the weight scale applied to the outputs: ``h·w·o`` for XNOR's
    ``α``, XNOR-Net++'s folded ``Γ`` (§4.3, "one multiplication per output") and
    BONN's scalar; ``h·w·o/n`` for cross-filter (its cost model: sharing one factor
    over ``n`` filters leaves one full-precision operation per ``n`` outputs, the
    ``γL/n`` term of ``S_CF(n)``, docs/cross_filter.md#speed-up).
  - ``k_mults``: XNOR-Net's ``K`` (docs/xnor.md#the-activation-map-k) as
    :func:`bnnjax.quant.scales.activation_scale` computes it: ``h_in·w_in`` (channel
    mean) ``+ h·w`` (box filter normalisation) ``+ h·w·o`` (applying ``K``); dense:
    ``1 + d_out``.
* **Theoretical speed-up** of binary-input, binary-kernel layers: XNOR-Net's
  ``L·c·N_W/(c·N_W + L)`` (XNOR, BONN and unscaled sign layers), cross-filter's
  ``S_CF(n) = γ·L·c·N_W/(c·N_W + γ·L/n)`` and XNOR-Net++'s ``64·w·h·o/(w·h·o + 1)``
  (``w × h`` the kernel, ``o`` the output channels, as the paper prints it), with
  ``N_W = kh·kw``. Full-precision layers are 1; layers with full-precision input
  (BWN, BW-CF) have no formula in the seeds: ``None``.

The method-specific counts (analytic scales stored, scale multiplications, the
speed-up formula) are asked of the layer's method
(:meth:`bnnjax.methods.Method.stored_scales`, ``scale_mults``, ``speedup``); the rules
above are the built-in methods' answers.

Output shapes come from an abstract forward pass (``jax.eval_shape``): nothing is
computed, so it is cheap for any input size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bnnjax import methods
from bnnjax.nn.layers import LatentWeight
from bnnjax.nn.layers import QuantConv
from bnnjax.nn.layers import QuantDense
from bnnjax.nn.spec import QuantSpec
from bnnjax.tree_paths import path_name


@dataclasses.dataclass(frozen=True)
class LayerSummary:
  """The costs of one layer (one module that owns parameters), per example.

  Attributes:
    name: path of the module in the model, e.g. ``"blocks/0/unit1/conv"``.
    kind: class name (``"QuantConv"``, ``"QuantDense"``, ``"BatchNorm"``, ...).
    method: the layer's quantization, its method's label
      (:func:`bnnjax.methods.label`: e.g. ``fp``, ``xnor``, ``bw_cf_4``, ``xnorpp_3``,
      ``bonn``); ``""`` for layers without a ``QuantSpec``.
    input_precision: bits of the layer's input (1 for a binary input), or ``None``
      for layers without MACs.
    output_shape: output shape without the batch axis; ``None`` if never called.
    params_by_bits: ``{bits: count}`` of what inference stores (module docstring).
    training_only_params: parameters only training needs (BONN's ``w``, ``μ``, ``σ``,
      class centres).
    memory_bytes: packed size, ``Σ bits / 8``.
    macs_by_precision: ``{bits: count}`` of multiply-accumulates.
    binary_ops: L-bit XNOR-popcount word operations.
    scale_mults: full-precision multiplications by ``α``/``α_g``/``Γ``/BONN's scale.
    k_mults: full-precision multiplications of XNOR-Net's ``K``.
    fp_mults: all full-precision multiplications (full-precision MACs + the two above).
    speedup: theoretical speed-up over the full-precision layer, or ``None``.
    speedup_formula: which formula gave ``speedup``.
  """

  name: str
  kind: str
  method: str
  input_precision: int | None
  output_shape: tuple[int, ...] | None
  params_by_bits: dict[int, int]
  training_only_params: int
  memory_bytes: float
  macs_by_precision: dict[int, int]
  binary_ops: int
  scale_mults: int
  k_mults: int
  fp_mults: int
  speedup: float | None
  speedup_formula: str

  @property
  def params(self) -> int:
    return sum(self.params_by_bits.values())

  @property
  def macs(self) -> int:
    return sum(self.macs_by_precision.values())

  def as_dict(self) -> dict[str, Any]:
    """A flat dict (``params_<b>bit``, ``macs_<b>bit`` columns) for tables/DataFrames."""
    d = {k: v for k, v in dataclasses.asdict(self).items()
         if k not in ("params_by_bits", "macs_by_precision")}
    for b, n in sorted(self.params_by_bits.items()):
      d[f"params_{b}bit"] = n
    for b, n in sorted(self.macs_by_precision.items()):
      d[f"macs_{b}bit"] = n
    return d


@dataclasses.dataclass(frozen=True)
class ModelSummary:
  """Per-layer costs and model totals. ``str()`` gives the printed table.

  Attributes:
    layers: one :class:`LayerSummary` per parameter-owning module, in call order
      (modules the forward pass never calls, e.g. BONN's feature prior, last).
    input_shape: the example shape the summary was traced with.
    L: bits per binary instruction used for ``binary_ops`` and the speed-ups.
    notes: caveats, e.g. modules whose MACs are not counted.
  """

  layers: tuple[LayerSummary, ...]
  input_shape: tuple[int, ...]
  L: int
  notes: tuple[str, ...] = ()

  # -- totals
  @property
  def params_by_bits(self) -> dict[int, int]:
    return _sum_dicts(l.params_by_bits for l in self.layers)

  @property
  def macs_by_precision(self) -> dict[int, int]:
    return _sum_dicts(l.macs_by_precision for l in self.layers)

  @property
  def total_params(self) -> int:
    return sum(self.params_by_bits.values())

  @property
  def training_only_params(self) -> int:
    return sum(l.training_only_params for l in self.layers)

  @property
  def memory_bytes(self) -> float:
    """Model size: packed bits / 8."""
    return sum(l.memory_bytes for l in self.layers)

  @property
  def fp32_bytes(self) -> int:
    """Size if every parameter were float32."""
    return 4 * self.total_params

  @property
  def compression_ratio(self) -> float:
    """float32-equivalent size / packed size (Larq prints the inverse)."""
    return self.fp32_bytes / self.memory_bytes if self.memory_bytes else float("nan")

  @property
  def total_macs(self) -> int:
    return sum(self.macs_by_precision.values())

  @property
  def binary_mac_fraction(self) -> float:
    """Fraction of MACs with binary input and kernel (XNOR-popcount)."""
    total = self.total_macs
    return self.macs_by_precision.get(1, 0) / total if total else 0.0

  @property
  def binary_ops(self) -> int:
    return sum(l.binary_ops for l in self.layers)

  @property
  def scale_mults(self) -> int:
    return sum(l.scale_mults for l in self.layers)

  @property
  def k_mults(self) -> int:
    return sum(l.k_mults for l in self.layers)

  @property
  def fp_mults(self) -> int:
    return sum(l.fp_mults for l in self.layers)

  def totals(self) -> dict[str, Any]:
    """The model totals as a dict."""
    return {
        "params": self.total_params,
        **{f"params_{b}bit": n for b, n in sorted(self.params_by_bits.items())},
        "training_only_params": self.training_only_params,
        "memory_bytes": self.memory_bytes,
        "fp32_bytes": self.fp32_bytes,
        "compression_ratio": self.compression_ratio,
        "macs": self.total_macs,
        **{f"macs_{b}bit": n for b, n in sorted(self.macs_by_precision.items())},
        "binary_mac_fraction": self.binary_mac_fraction,
        "binary_ops": self.binary_ops,
        "scale_mults": self.scale_mults,
        "k_mults": self.k_mults,
        "fp_mults": self.fp_mults,
    }

  def as_dicts(self) -> list[dict[str, Any]]:
    """One flat dict per layer (e.g. ``pandas.DataFrame(s.as_dicts())``)."""
    return [l.as_dict() for l in self.layers]

  def to_text(self) -> str:
    """The layer table and the totals, Larq style."""
    pbits = sorted(self.params_by_bits)
    mbits = sorted(self.macs_by_precision)
    header = (["Layer", "Kind", "Method", "In bits", "Outputs"]
              + [f"# {b}-bit" for b in pbits] + ["Mem (kB)"]
              + [f"{b}-bit MACs" for b in mbits]
              + [f"Bin ops/{self.L}", "Scale mults", "K mults", "FP mults", "Speed-up"])
    rows = []
    for l in self.layers:
      rows.append(
          [l.name, l.kind, l.method or "-",
           "-" if l.input_precision is None else str(l.input_precision),
           "?" if l.output_shape is None else "x".join(map(str, l.output_shape)) or "()"]
          + [_int(l.params_by_bits.get(b, 0)) for b in pbits]
          + [f"{l.memory_bytes / 1024:.2f}"]
          + [_int(l.macs_by_precision.get(b, 0)) for b in mbits]
          + [_int(l.binary_ops), _int(l.scale_mults), _int(l.k_mults), _int(l.fp_mults),
             "-" if l.speedup is None else f"{l.speedup:.2f}"])
    total = (["Total", "", "", "", ""]
             + [_int(self.params_by_bits[b]) for b in pbits]
             + [f"{self.memory_bytes / 1024:.2f}"]
             + [_int(self.macs_by_precision[b]) for b in mbits]
             + [_int(self.binary_ops), _int(self.scale_mults), _int(self.k_mults),
                _int(self.fp_mults), ""])
    table = _format_table(header, rows, total)
    mb = 1024 * 1024
    items = [
        ("Input shape", str(self.input_shape)),
        ("Total params", f"{self.total_params:,}  ("
         + ", ".join(f"{b}-bit: {self.params_by_bits[b]:,}" for b in pbits) + ")"),
        ("Training-only params", f"{self.training_only_params:,}"),
        ("Model size", f"{self.memory_bytes / mb:.4f} MB"),
        ("Float-32 equivalent", f"{self.fp32_bytes / mb:.4f} MB"),
        ("Compression ratio", f"{self.compression_ratio:.2f}x (float32 / packed)"),
        ("MACs", f"{self.total_macs:,}"),
        ("Fraction of binary MACs", f"{self.binary_mac_fraction:.4f}"),
        (f"Binary ops ({self.L}-bit words)", f"{self.binary_ops:,}"),
        ("Full-precision mults", f"{self.fp_mults:,}  (scales: {self.scale_mults:,}, "
         f"K: {self.k_mults:,})"),
    ]
    lines = [table, ""] + [f"{k:<28}{v}" for k, v in items]
    lines += [f"Note: {n}" for n in self.notes]
    return "\n".join(lines)

  def __str__(self) -> str:
    return self.to_text()


def _int(n: int) -> str:
  return f"{n:,}" if n else "0"


def _sum_dicts(dicts) -> dict[int, int]:
  out: dict[int, int] = {}
  for d in dicts:
    for k, v in d.items():
      out[k] = out.get(k, 0) + v
  return out


def _format_table(header, rows, total) -> str:
  cols = list(zip(header, *rows, total))
  widths = [max(len(str(c)) for c in col) for col in cols]
  def fmt(row):
    return "  ".join(str(c).ljust(w) if i < 5 else str(c).rjust(w)
                     for i, (c, w) in enumerate(zip(row, widths))).rstrip()
  rule = "-" * len(fmt(header))
  return "\n".join([fmt(header), rule, *map(fmt, rows), rule, fmt(total)])


def spec_label(spec: QuantSpec) -> str:
  """A short name for a spec, the :func:`bnnjax.nn.method_spec` name where one fits
  (``"xnor"``, ``"bw_cf_4"``, ``"xnorpp_3"``, ...); other combinations get a
  descriptive label (e.g. ``"sign"`` for binary input and kernel without scale).
  Each method labels its own specs (:func:`bnnjax.methods.label`)."""
  return methods.label(spec)


# ---------------------------------------------------------------------- tracing
def _direct_variables(module: nnx.Module) -> list[tuple[str, nnx.Variable]]:
  return [(k, v) for k, v in vars(module).items() if isinstance(v, nnx.Variable)]


def _training_only(v: nnx.Variable) -> bool:
  """Whether ``v`` is a variable only training needs (BONN's ``w``, ``μ``, ``σ``,
  class centres: the methods' :attr:`~bnnjax.methods.Method.training_only_variables`)."""
  return isinstance(v, methods.training_only_variables())


def _owns_parameters(module: nnx.Module) -> bool:
  return any(isinstance(v, (nnx.Param, nnx.BatchStat)) or _training_only(v)
             for _, v in _direct_variables(module))


@contextlib.contextmanager
def _recording(types: set[type], targets: dict[int, str], record: dict[str, tuple],
               order: list[str]):
  """Records ``(input_shape, output_shape)`` of each target module's first call,
  under its path ``targets[id(module)]``.

  Patches the classes' ``__call__`` for the duration of the abstract trace only (and
  restores them even on error); calls on modules outside ``targets`` pass through.
  """
  saved = []
  try:
    for cls in types:
      if getattr(cls, "__call__", object.__call__) is object.__call__:
        continue
      original_own = cls.__dict__.get("__call__")
      inner = cls.__call__

      def wrapper(self, *args, _inner=inner, **kwargs):
        path = targets.get(id(self))
        first = path is not None and path not in record and path not in order
        if first:
          order.append(path)
        out = _inner(self, *args, **kwargs)
        if first:
          x = args[0] if args else None
          y = out[0] if isinstance(out, tuple) else out
          record[path] = (tuple(getattr(x, "shape", ())), tuple(getattr(y, "shape", ())))
        return out

      saved.append((cls, original_own))
      cls.__call__ = wrapper
    yield
  finally:
    for cls, original_own in reversed(saved):
      if original_own is None:
        del cls.__call__
      else:
        cls.__call__ = original_own


def _call_kwargs(model) -> dict:
  try:
    params = inspect.signature(type(model).__call__).parameters
  except (TypeError, ValueError):
    return {}
  return {"train": False} if "train" in params else {}


def _trace(model: nnx.Module, input_shape: tuple[int, ...], dtype):
  """Parameter-owning modules ``[(path, module)]`` in call order (uncalled ones last)
  and ``{path: (input_shape, output_shape)}`` from an abstract forward pass.

  The model is split and merged inside ``jax.eval_shape``, so an abstract model (from
  ``nnx.eval_shape``, holding only shapes) works as well as a concrete one.
  """
  owners = [(path_name(p), m) for p, m in nnx.iter_graph(model)
            if isinstance(m, nnx.Module) and _owns_parameters(m)]
  types = {type(m) for _, m in owners}
  targets: dict[int, str] = {}
  record: dict[str, tuple] = {}
  order: list[str] = []
  graphdef, state = nnx.split(model)
  kwargs = _call_kwargs(model)

  def forward(state, x):
    copy = nnx.merge(graphdef, state)
    targets.update({id(m): path_name(p) for p, m in nnx.iter_graph(copy)
                    if isinstance(m, nnx.Module) and _owns_parameters(m)})
    return copy(x, **kwargs)

  x = jax.ShapeDtypeStruct((1, *input_shape), dtype)
  with _recording(types, targets, record, order):
    jax.eval_shape(forward, state, x)
  names = dict(owners)
  called = [(p, names[p]) for p in order if p in names]
  uncalled = [(p, m) for p, m in owners if p not in record]
  return called + uncalled, record


# ---------------------------------------------------------------------- counting
def _value(v: nnx.Variable):
  """The array (or ``ShapeDtypeStruct`` of an abstract model) a variable holds."""
  return v.get_value()


def _bits(v: nnx.Variable) -> int:
  return int(np.dtype(_value(v).dtype).itemsize * 8)


def _size(v: nnx.Variable) -> int:
  return int(np.prod(_value(v).shape, dtype=np.int64))


def _quant_layer(name, layer, shapes, L, gamma) -> LayerSummary:
  spec: QuantSpec = layer.spec
  in_shape, out_shape = shapes
  kernel = layer.kernel
  kshape = tuple(_value(kernel).shape)
  is_conv = isinstance(layer, QuantConv)
  if is_conv:
    kh, kw, c, o = kshape
    h_in, w_in = in_shape[1:3]
    h, w = out_shape[1:3]
  else:
    (c, o), kh, kw, h_in, w_in, h, w = kshape, 1, 1, 1, 1, 1, 1
  pixels = h * w
  float_bits = _bits(kernel)
  params: dict[int, int] = {}
  training_only = 0

  def add(bits, n):
    if n:
      params[bits] = params.get(bits, 0) + int(n)

  add(1 if spec.binary_kernel else float_bits, _size(kernel))
  for _, v in _direct_variables(layer):
    if v is kernel:
      continue
    if _training_only(v):
      training_only += _size(v)
    elif isinstance(v, (nnx.Param, nnx.BatchStat)):  # bias, Γ factors
      add(_bits(v), _size(v))
  method = methods.for_spec(spec)
  shape = methods.LayerShape(kh=kh, kw=kw, c=c, o=o, h_in=h_in, w_in=w_in, h=h, w=w)
  add(float_bits, method.stored_scales(spec, shape))

  in_bits = 1 if spec.binary_input else float_bits
  k_bits = 1 if spec.binary_kernel else float_bits
  macs = pixels * kh * kw * c * o
  binary = spec.binary_input and spec.binary_kernel
  macs_by = {max(in_bits, k_bits): macs} if macs else {}
  binary_ops = pixels * o * math.ceil(kh * kw * c / L) if binary else 0
  scale_mults = method.scale_mults(spec, shape)
  if spec.activation_scale:
    k_mults = (h_in * w_in + pixels + pixels * o) if is_conv else 1 + o
  else:
    k_mults = 0
  fp_mults = (macs if spec.full_precision else 0) + scale_mults + k_mults

  if binary:
    s, formula = method.speedup(spec, shape, L=L, gamma=gamma)
  elif spec.full_precision:
    s, formula = 1.0, "full precision"
  else:
    s, formula = None, "no formula (full-precision input)"
  memory = sum(b * n for b, n in params.items()) / 8
  return LayerSummary(
      name=name, kind=type(layer).__name__, method=method.label(spec),
      input_precision=in_bits, output_shape=tuple(out_shape[1:]),
      params_by_bits=params, training_only_params=training_only, memory_bytes=memory,
      macs_by_precision=macs_by, binary_ops=binary_ops, scale_mults=scale_mults,
      k_mults=k_mults, fp_mults=fp_mults, speedup=s, speedup_formula=formula)


def _other_layer(name, module, shapes, notes) -> LayerSummary:
  params: dict[int, int] = {}
  training_only = 0
  for _, v in _direct_variables(module):
    if _training_only(v):
      training_only += _size(v)
    elif isinstance(v, (nnx.Param, nnx.BatchStat)):
      b = 1 if isinstance(v, LatentWeight) else _bits(v)
      params[b] = params.get(b, 0) + _size(v)
  macs_by: dict[int, int] = {}
  fp_mults = 0
  in_bits = None
  out_shape = None if shapes is None else tuple(shapes[1][1:])
  if isinstance(module, (nnx.Conv, nnx.Linear)) and shapes is not None:
    # Larq's count: kernel size × output pixels (all dims but batch and features).
    bits = _bits(module.kernel)
    macs = _size(module.kernel) * int(np.prod(shapes[1][1:-1], dtype=np.int64))
    macs_by = {bits: macs}
    fp_mults = macs
    in_bits = bits
  elif any(isinstance(v, LatentWeight) for _, v in _direct_variables(module)):
    notes.append(f"{name} ({type(module).__name__}) holds binary weights but is not a "
                 "QuantConv/QuantDense: its MACs are not counted.")
  memory = sum(b * n for b, n in params.items()) / 8
  return LayerSummary(
      name=name, kind=type(module).__name__, method="", input_precision=in_bits,
      output_shape=out_shape, params_by_bits=params, training_only_params=training_only,
      memory_bytes=memory, macs_by_precision=macs_by, binary_ops=0, scale_mults=0,
      k_mults=0, fp_mults=fp_mults,
      speedup=1.0 if macs_by else None,
      speedup_formula="full precision" if macs_by else "")


def summary(model: nnx.Module, input_shape: Sequence[int], *, L: int = 64,
            gamma: float = 1.91, dtype=jnp.float32,
            print_fn: Callable[[str], Any] | None = print) -> ModelSummary:
  """Per-layer bits, memory, MACs, binary ops, scale multiplications and speed-ups.

  The counting rules are in the module docstring (Larq's ``models.summary`` for bits,
  memory and MACs; docs/xnor.md, docs/cross_filter.md, docs/xnorpp.md and the seed
  papers for scaling factors and speed-ups).

  Args:
    model: an NNX model, called as ``model(x, train=False)`` when its ``__call__``
      takes ``train``, else ``model(x)``.
    input_shape: shape of one example without the batch axis, e.g. ``(28, 28, 1)``.
    L: bits per binary instruction (64; 512 for AVX-512), for ``binary_ops`` and the
      XNOR-Net / cross-filter speed-ups.
    gamma: cross-filter's MAC/binary-op cost ratio ``γ`` (1.91, after TBN).
    dtype: input dtype for the abstract forward pass.
    print_fn: called with the table (``print`` by default); ``None`` prints nothing.

  Returns:
    A :class:`ModelSummary` (``.layers``, totals as properties and ``.totals()``,
    ``.as_dicts()`` for DataFrames, ``str()`` the printed text).

  Raises:
    TypeError: ``model`` is not an ``nnx.Module``.
    ValueError: ``input_shape`` is not a tuple of positive integers, or ``L`` is not a
      positive integer.
  """
  if not isinstance(model, nnx.Module):
    raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}.")
  try:
    shape = tuple(input_shape)
  except TypeError:
    shape = ()
  if not shape or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape):
    raise ValueError(f"input_shape={input_shape!r} must be a sequence of positive "
                     "integers (one example, no batch axis), e.g. (28, 28, 1).")
  if not isinstance(L, int) or L < 1:
    raise ValueError(f"L={L!r}; allowed values are positive integers (e.g. 64, 512).")
  modules, shapes = _trace(model, shape, dtype)
  notes: list[str] = []
  layers = []
  for name, m in modules:
    s = shapes.get(name)
    if isinstance(m, (QuantConv, QuantDense)) and s is not None:
      layers.append(_quant_layer(name, m, s, L, gamma))
    else:
      if isinstance(m, (QuantConv, QuantDense)):
        notes.append(f"{name} is never called by the forward pass: only its parameters "
                     "are counted.")
      layers.append(_other_layer(name, m, s, notes))
  result = ModelSummary(layers=tuple(layers), input_shape=tuple(map(int, shape)), L=L, notes=tuple(notes))
  if print_fn is not None:
    print_fn(result.to_text())
  return result
