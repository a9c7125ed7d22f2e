"""Quantized Flax NNX layers and their quantization spec."""

from bnnjax.nn.layers import ClassCenter
from bnnjax.nn.layers import FeaturePrior
from bnnjax.nn.layers import LatentWeight
from bnnjax.nn.layers import Modulation
from bnnjax.nn.layers import PriorParam
from bnnjax.nn.layers import QuantConv
from bnnjax.nn.layers import QuantDense
from bnnjax.nn.layers import ScaleFactor
from bnnjax.nn.layers import conv_output_size
from bnnjax.nn.reactnet import LearnableBias
from bnnjax.nn.reactnet import PReLUSlope
from bnnjax.nn.reactnet import RPReLU
from bnnjax.nn.reactnet import RSign
from bnnjax.nn.reactnet import ThresholdShift
from bnnjax.nn.spec import COMPUTE_DTYPES
from bnnjax.nn.spec import COMPUTES
from bnnjax.nn.spec import FP
from bnnjax.nn.spec import METHODS
from bnnjax.nn.spec import QuantSpec
from bnnjax.nn.spec import method_spec
from bnnjax.nn.spec import parse_method
