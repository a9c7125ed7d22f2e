"""Packed inference: trained models as 1-bit weights, saved to disk and run by the
XNOR-popcount kernels (:mod:`bnnjax.kernels`)."""

from bnnjax.packed.model import PackedModel
from bnnjax.packed.model import float32_size
from bnnjax.packed.model import load
from bnnjax.packed.model import pack_model
from bnnjax.packed.model import pack_sign_stream
from bnnjax.packed.model import save
from bnnjax.packed.model import sign_threshold
from bnnjax.packed.model import unpack_sign_stream
