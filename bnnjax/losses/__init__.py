"""Loss functions: BONN's Bayesian kernel and feature losses (docs/bonn.md)."""

from bnnjax.losses.bayesian import bayesian_feature_loss
from bnnjax.losses.bayesian import bayesian_kernel_loss
from bnnjax.losses.bayesian import update_centers
