"""Analysis of binary networks: theoretical speed-ups."""

from bnnjax.analysis.speedup import cf_speedup
from bnnjax.analysis.speedup import xnor_speedup
from bnnjax.analysis.speedup import xnorpp_speedup_ours
from bnnjax.analysis.speedup import xnorpp_speedup_xnor
