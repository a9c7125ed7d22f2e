"""Data-free post-training quantization and its bit-efficiency analysis (docs/ptq.md).

Quantizers (:func:`quantize`, :func:`dequantize`), whole models
(:func:`quantize_model`, :func:`quantize_params`), storage sizes
(:func:`storage_report`), bit-efficiency metrics (:func:`tensor_metrics`) and class
grouping (:func:`group_classes`); the figures are in :mod:`bnnjax.ptq.plots`. The
sweep over schemes, bits and granularities is ``python -m experiments.ptq``.
"""

from bnnjax.ptq.grouping import agglomerate
from bnnjax.ptq.grouping import group_classes
from bnnjax.ptq.grouping import grouped_accuracy
from bnnjax.ptq.grouping import symmetrised_confusion
from bnnjax.ptq.metrics import channel_quartiles
from bnnjax.ptq.metrics import quartile_error
from bnnjax.ptq.metrics import summarize
from bnnjax.ptq.metrics import tensor_metrics
from bnnjax.ptq.model import DEFAULT_GROUPS
from bnnjax.ptq.model import GRANULARITIES
from bnnjax.ptq.model import GROUPS
from bnnjax.ptq.model import float_tensors
from bnnjax.ptq.model import parameter_groups
from bnnjax.ptq.model import path_name
from bnnjax.ptq.model import quantize_model
from bnnjax.ptq.model import quantize_params
from bnnjax.ptq.quantizers import MAX_BITS
from bnnjax.ptq.quantizers import MIN_BITS
from bnnjax.ptq.quantizers import SCHEMES
from bnnjax.ptq.quantizers import Quantized
from bnnjax.ptq.quantizers import code_range
from bnnjax.ptq.quantizers import dequantize
from bnnjax.ptq.quantizers import quantize
from bnnjax.ptq.storage import compressed_sizes
from bnnjax.ptq.storage import pack_codes
from bnnjax.ptq.storage import packed_size
from bnnjax.ptq.storage import storage_report
from bnnjax.ptq.storage import unpack_codes
