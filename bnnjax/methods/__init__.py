"""The quantization methods of the papers: one module per method, registered by name.

====================== ================================ ==========================
module                 names                            ``QuantSpec.weight_scale``
====================== ================================ ==========================
:mod:`.fp`             ``fp`` (and unscaled sign specs) ``none``
:mod:`.bwn`            ``bwn``                          ``xnor``
:mod:`.xnor`           ``xnor``                         ``xnor``
:mod:`.cross_filter`   ``bw_cf_<n>``, ``xnor_cf_<n>``   ``cross_filter``
:mod:`.xnorpp`         ``xnorpp_<case>`` (``xnor++``)   ``xnorpp``
:mod:`.bonn`           ``bonn``                         ``bonn``
====================== ================================ ==========================

Each module defines a :class:`Method` (what the layers, the model summary, the plots
and the trainer ask of it) and registers it (:mod:`.registry`). A new method is one new
module: subclass :class:`Method`, define its preset and whatever differs from the
defaults, and :func:`register` it. :func:`resolve` turns ``config.method`` and the
config's quantization fields into a :class:`~bnnjax.nn.QuantSpec`, once.
"""

from bnnjax.methods.base import LayerShape
from bnnjax.methods.base import Method
from bnnjax.methods.base import SpecError
from bnnjax.methods.registry import CONFIG_FIELDS
from bnnjax.methods.registry import config_error
from bnnjax.methods.registry import for_spec
from bnnjax.methods.registry import from_config
from bnnjax.methods.registry import get
from bnnjax.methods.registry import label
from bnnjax.methods.registry import loss_terms
from bnnjax.methods.registry import names
from bnnjax.methods.registry import parse
from bnnjax.methods.registry import register
from bnnjax.methods.registry import resolve
from bnnjax.methods.registry import training_only_variables
from bnnjax.methods.registry import unregister
from bnnjax.methods.registry import weight_scales
# The built-in methods register themselves, in this order.
from bnnjax.methods import fp
from bnnjax.methods import bwn
from bnnjax.methods import xnor
from bnnjax.methods import cross_filter
from bnnjax.methods import xnorpp
from bnnjax.methods import bonn
