"""Analysis of binary networks: theoretical speed-ups, latent-weight distributions."""

from bnnjax.analysis.speedup import cf_speedup
from bnnjax.analysis.speedup import xnor_speedup
from bnnjax.analysis.speedup import xnorpp_speedup_ours
from bnnjax.analysis.speedup import xnorpp_speedup_xnor
from bnnjax.analysis.latent import bimodality
from bnnjax.analysis.latent import mode_mass
from bnnjax.analysis.latent import plot_latent_histograms
from bnnjax.analysis.latent import two_mode_fit
