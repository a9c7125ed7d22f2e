"""Training: the jit-compiled loop, optimizers, loss hook, checkpoints and metrics."""

from bnnjax.train.loss_terms import LOSS_TERMS
from bnnjax.train.loss_terms import LossTerm
from bnnjax.train.loss_terms import build_loss_terms
from bnnjax.train.trainer import TrainState
from bnnjax.train.trainer import build_model
from bnnjax.train.trainer import load_trained
from bnnjax.train.trainer import set_up
from bnnjax.train.trainer import quant_spec
from bnnjax.train.trainer import train_and_evaluate
