"""Pure-function quantizers and scaling factors (docs/sign.md, docs/quantizers.md,
docs/xnor.md, docs/cross_filter.md).

Quantizers are picked by name from one registry (:mod:`bnnjax.quant.registry`):
``get_quantizer(name, **hyper_parameters)``; :func:`is_sign` tells which compute the
±1 sign that the packed path needs.
"""

from bnnjax.quant.kbit import dorefa
from bnnjax.quant.kbit import ste_tern
from bnnjax.quant.registry import QUANTIZERS
from bnnjax.quant.registry import VALUES
from bnnjax.quant.registry import Quantizer
from bnnjax.quant.registry import QuantizerInfo
from bnnjax.quant.registry import bits
from bnnjax.quant.registry import check_kwargs
from bnnjax.quant.registry import get_quantizer
from bnnjax.quant.registry import is_sign
from bnnjax.quant.registry import quantizer_info
from bnnjax.quant.registry import register_quantizer
from bnnjax.quant.registry import sign_quantizers
from bnnjax.quant.scales import activation_scale
from bnnjax.quant.scales import cross_filter_from_filterwise
from bnnjax.quant.scales import cross_filter_scale
from bnnjax.quant.scales import dense_activation_scale
from bnnjax.quant.scales import xnor_weight_scale
from bnnjax.quant.sign import approx_sign
from bnnjax.quant.sign import heaviside
from bnnjax.quant.sign import identity_sign
from bnnjax.quant.sign import magnitude_aware_sign
from bnnjax.quant.sign import sign
from bnnjax.quant.sign import ste_heaviside
from bnnjax.quant.sign import ste_sign
from bnnjax.quant.sign import swish_sign
