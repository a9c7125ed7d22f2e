"""Bit-packed XNOR-popcount kernels (docs/packed.md): packing, matmul, binary conv.

* :func:`pack_bits` / :func:`unpack_bits`: ±1 ↔ ``uint32`` words along the
  contraction axis, bit 1 ↔ +1, zero padding bits.
* :func:`xnor_matmul`: ``sign(A) @ sign(B)`` exactly (int32) from packed operands, by
  an implementation chosen by name with fallback (:mod:`bnnjax.kernels.api`):
  ``"reference"``, ``"xla"`` (fast on CPU), ``"pallas_gpu"`` (Triton), ``"pallas_tpu"``.
* :func:`binary_conv` / :func:`binary_conv_packed`: im2col + packed matmul with a +1
  or 0 border (the correction of docs/packed.md#padding), any strides,
  SAME/VALID/explicit padding.
* :func:`binary_conv_ste` / :func:`binary_dense_ste`: the same for training, with the
  gradient of the float reference (``custom_vjp``).
"""

from bnnjax.kernels.api import IMPLEMENTATIONS
from bnnjax.kernels.api import Unavailable
from bnnjax.kernels.api import resolve
from bnnjax.kernels.api import xnor_matmul
from bnnjax.kernels.conv import binary_conv
from bnnjax.kernels.conv import binary_conv_packed
from bnnjax.kernels.conv import binary_dense
from bnnjax.kernels.conv import pack_conv_kernel
from bnnjax.kernels.conv import pad_correction
from bnnjax.kernels.conv import tap_sums
from bnnjax.kernels.packing import num_words
from bnnjax.kernels.packing import pack_bits
from bnnjax.kernels.packing import popcount_sum
from bnnjax.kernels.packing import unpack_bits
from bnnjax.kernels.reference import binary_conv_reference
from bnnjax.kernels.reference import xnor_matmul_popcount_reference
from bnnjax.kernels.reference import xnor_matmul_reference
from bnnjax.kernels.ste import binary_conv_ste
from bnnjax.kernels.ste import binary_dense_ste
