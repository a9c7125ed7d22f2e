"""Pure-function quantizers and scaling factors (docs/sign.md, docs/xnor.md,
docs/cross_filter.md)."""

from bnnjax.quant.scales import activation_scale
from bnnjax.quant.scales import cross_filter_from_filterwise
from bnnjax.quant.scales import cross_filter_scale
from bnnjax.quant.scales import dense_activation_scale
from bnnjax.quant.scales import xnor_weight_scale
from bnnjax.quant.sign import QUANTIZERS
from bnnjax.quant.sign import Quantizer
from bnnjax.quant.sign import approx_sign
from bnnjax.quant.sign import get_quantizer
from bnnjax.quant.sign import identity_sign
from bnnjax.quant.sign import sign
from bnnjax.quant.sign import ste_sign
from bnnjax.quant.sign import swish_sign
