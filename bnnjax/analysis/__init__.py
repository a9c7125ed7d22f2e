"""Analysis of binary networks: model summary, theoretical speed-ups, training
diagnostics, latent-weight distributions and plots."""

from bnnjax.analysis.speedup import cf_speedup
from bnnjax.analysis.speedup import xnor_speedup
from bnnjax.analysis.speedup import xnorpp_speedup_ours
from bnnjax.analysis.speedup import xnorpp_speedup_xnor
from bnnjax.analysis.latent import bimodality
from bnnjax.analysis.latent import mode_mass
from bnnjax.analysis.latent import plot_latent_histograms
from bnnjax.analysis.latent import two_mode_fit
from bnnjax.analysis.model_summary import LayerSummary
from bnnjax.analysis.model_summary import ModelSummary
from bnnjax.analysis.model_summary import spec_label
from bnnjax.analysis.model_summary import summary
from bnnjax.analysis.diagnostics import flip_ratio
from bnnjax.analysis.diagnostics import latent_weights
from bnnjax.analysis.diagnostics import saturation
from bnnjax.analysis.diagnostics import training_diagnostics
from bnnjax.analysis.diagnostics import tree_norms
from bnnjax.analysis.plots import cf_sharing_error
from bnnjax.analysis.plots import plot_scaling_factors
from bnnjax.analysis.plots import plot_training_curves
from bnnjax.analysis.plots import read_metrics
from bnnjax.analysis.plots import scaling_factors
