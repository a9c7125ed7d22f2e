"""Analysis of binary networks: model summary, theoretical speed-ups, training
diagnostics, latent-weight distributions and plots.

The training diagnostics and latent-weight measures are computed by the trainer and
live in :mod:`bnnjax.train.diagnostics`; they are exported here too.
"""

from bnnjax.analysis.speedup import cf_speedup
from bnnjax.analysis.speedup import xnor_speedup
from bnnjax.analysis.speedup import xnorpp_speedup_ours
from bnnjax.analysis.speedup import xnorpp_speedup_xnor
from bnnjax.analysis.model_summary import LayerSummary
from bnnjax.analysis.model_summary import ModelSummary
from bnnjax.analysis.model_summary import spec_label
from bnnjax.analysis.model_summary import summary
from bnnjax.analysis.plots import cf_sharing_error
from bnnjax.analysis.plots import plot_scaling_factors
from bnnjax.analysis.plots import plot_training_curves
from bnnjax.analysis.plots import read_metrics
from bnnjax.analysis.plots import scaling_factors
from bnnjax.train.diagnostics import bimodality
from bnnjax.train.diagnostics import flip_ratio
from bnnjax.train.diagnostics import latent_weights
from bnnjax.train.diagnostics import mode_mass
from bnnjax.train.diagnostics import plot_latent_histograms
from bnnjax.train.diagnostics import read_histograms
from bnnjax.train.diagnostics import saturation
from bnnjax.train.diagnostics import training_diagnostics
from bnnjax.train.diagnostics import tree_norms
from bnnjax.train.diagnostics import two_mode_fit
