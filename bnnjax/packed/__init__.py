"""Packed inference: trained models with their binary layers as 1-bit kernel words, run
by the XNOR-popcount kernels (:mod:`bnnjax.kernels`), saved to and loaded from disk."""

from bnnjax.packed.model import FORMAT
from bnnjax.packed.model import PackedConv
from bnnjax.packed.model import PackedDense
from bnnjax.packed.model import float32_nbytes
from bnnjax.packed.model import inference_fn
from bnnjax.packed.model import load
from bnnjax.packed.model import nbytes
from bnnjax.packed.model import pack_model
from bnnjax.packed.model import pack_sign_stream
from bnnjax.packed.model import packable
from bnnjax.packed.model import packed_layers
from bnnjax.packed.model import save
from bnnjax.packed.model import unpack_sign_stream
